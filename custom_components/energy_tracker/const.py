"""Constants for the Energy Tracker integration."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Final

DOMAIN: Final = "energy_tracker"
LOGGER = logging.getLogger(__package__)

CONF_CHANNELS: Final = "channels"
# Minimum seconds between entity updates (and so recorded states); 0: every reading.
# Energy counters lose nothing by it: each update carries the add-on's running total.
CONF_UPDATE_INTERVAL: Final = "update_interval"
CONF_CO2_INTENSITY_ENTITY: Final = "co2_intensity_entity"
# Each update is a recorder row per changed entity: at every 2 s reading that was ~440 rows
# a minute (~1 GB of database over the recorder's 10 days); 5 s stays live for a power card.
DEFAULT_UPDATE_INTERVAL: Final = 5
MAX_UPDATE_INTERVAL: Final = 300
DEFAULT_PORT: Final = 8099

# Reconnect delays grow 1 s, 2 s, 4 s then stay at 5 s, so a restarted add-on is back
# within a few seconds of answering again.
RECONNECT_INITIAL_DELAY: Final = 1.0
RECONNECT_MAX_DELAY: Final = 5.0
# A refused token is tried again this often (the reauth flow is what fixes it).
AUTH_RETRY_DELAY: Final = 60.0

# A short outage (add-on update, host reboot) is normal; only a long one is worth a
# repairs issue.
UNREACHABLE_ISSUE_AFTER: Final = timedelta(minutes=5)
ISSUE_UNREACHABLE: Final = "addon_unreachable"
ISSUE_NILM_BROKEN: Final = "nilm_broken"
ISSUE_TIME_ZONE: Final = "time_zone_mismatch"
ISSUE_ADDON_OUTDATED: Final = "addon_outdated"
ISSUE_NO_READINGS: Final = "no_readings"
