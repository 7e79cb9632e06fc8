"""Push coordinator: keeps the add-on's WebSocket stream open and fans states out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from contextlib import aclosing
from datetime import datetime

from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HassJob, HomeAssistant, callback
from homeassistant.core import DOMAIN as HOMEASSISTANT_DOMAIN
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.event import async_call_later
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed

from .action_context import ActionContext
from .api import CannotConnect, EnergyTrackerClient, InvalidAuth, InvalidData
from .const import (
    AUTH_RETRY_DELAY,
    CONF_UPDATE_INTERVAL,
    DEFAULT_UPDATE_INTERVAL,
    DOMAIN,
    LOGGER,
    RECONNECT_INITIAL_DELAY,
    RECONNECT_MAX_DELAY,
)
from .models import MeterInfo, MeterState
from .outage import async_outage

type EnergyTrackerConfigEntry = ConfigEntry[EnergyTrackerCoordinator]
# What decides which devices and entities exist, and their names, besides the appliances
# (added on the fly): the add-on's info (boards, channels, version) and its relays and
# extra meters, by id and name (a renamed relay is a renamed device and Assist name).
type DeviceLayout = tuple[MeterInfo, frozenset[tuple[int, str]],
                     frozenset[tuple[str, str, str, str | None]]]


class WrongMeter(InvalidData):
    """The add-on at the entry's address serves another meter than the entry's."""


def device_layout(info: MeterInfo, state: MeterState) -> DeviceLayout:
    return (info,
            frozenset((relay_id, relay.name) for relay_id, relay in state.relays.items()),
            # Its meter id and source make its device (a real board given to a simulated
            # meter changes the model; a new data folder, a new device).
            frozenset((key, meter.name, meter.meter_id, meter.source)
                      for key, meter in state.extra_meters.items()))


class EnergyTrackerCoordinator(DataUpdateCoordinator[MeterState]):
    """Holds the latest MeterState; updated by the stream, not by polling."""

    config_entry: EnergyTrackerConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: EnergyTrackerConfigEntry,
        client: EnergyTrackerClient,
        info: MeterInfo,
        shown_default_names: Mapping[str, str] | None = None,
    ) -> None:
        """Set up without I/O; async_config_entry_first_refresh fetches the first state."""
        super().__init__(
            hass, LOGGER, config_entry=entry, name=info.name,
            update_interval=None,
        )
        self.client = client
        self.info = info
        self.meter_device_id: str | None = None  # the meter's device, once registered
        self._outage = async_outage(hass, entry)
        self.min_interval = float(
            entry.options.get(CONF_UPDATE_INTERVAL, DEFAULT_UPDATE_INTERVAL)
        )
        self._last_publish = -float("inf")
        self._pending: MeterState | None = None
        self._cancel_pending: CALLBACK_TYPE | None = None
        self._layout: DeviceLayout | None = None
        self._reload_scheduled = False
        self._token_refused = False
        self.action_context = ActionContext()  # see action_context.py
        self._shown_default_names = shown_default_names or {}  # see default_names.py

    def shown_name(self, name: str) -> str:
        """A channel's or relay's name from the add-on as Home Assistant shows it."""
        return self._shown_default_names.get(name, name)

    @property
    def newest_seq(self) -> int:
        """The newest reading received, shown or still held back by the update interval."""
        return self._pending.seq if self._pending is not None else self.data.seq

    @property
    def issue_id(self) -> str:
        """The repairs issue raised for this entry after a long outage."""
        return self._outage.issue_id

    async def _async_update_data(self) -> MeterState:
        """One REST read: the first refresh at setup (and a manual update_entity)."""
        try:
            return self._checked(await self.client.get_state())
        except InvalidAuth as err:
            raise ConfigEntryAuthFailed(
                translation_domain=DOMAIN, translation_key="invalid_auth"
            ) from err
        except (CannotConnect, InvalidData) as err:
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="cannot_read_state",
                translation_placeholders={"error": str(err)},
            ) from err

    @callback
    def async_start_stream(self) -> None:
        """Run the stream for as long as the entry is loaded."""
        self._layout = device_layout(self.info, self.data)  # what the entities were made of
        self.config_entry.async_create_background_task(
            self.hass, self._async_run_stream(), f"{DOMAIN} stream {self.info.meter_id}"
        )

    async def async_shutdown(self) -> None:
        """The entry cancels the stream task itself. An outage goes on being timed: it
        may outlast this coordinator (a reload while the add-on is down)."""
        self._async_drop_pending()
        await super().async_shutdown()

    async def _async_run_stream(self) -> None:
        delay = RECONNECT_INITIAL_DELAY
        while True:
            lost: Exception
            try:
                # aclosing: a refused message closes the WebSocket now, not at GC.
                async with aclosing(self.client.stream()) as stream:
                    async for state in stream:
                        self._async_stream_state(self._checked(state))
                        delay = RECONNECT_INITIAL_DELAY
                lost = CannotConnect("the add-on closed the stream")
            except InvalidAuth as err:
                # Ask the user for a new token. The add-on answers: the reauth flow, not an
                # "unreachable" issue, says why. Tried again now and then all the same: the
                # add-on may get its old token back (a restored backup).
                if not self._token_refused:
                    self._token_refused = True
                    # Once: a reauth prompt may not show at once (another flow of the
                    # entry open), and the entities alone say nothing of why.
                    LOGGER.warning(
                        "The Energy Tracker add-on refused the API token (a new token in "
                        "its options, or a reinstalled add-on): enter the new one when "
                        "Home Assistant asks to re-authenticate %s", self.config_entry.title)
                    self._async_set_unavailable(err)
                # At every refusal: an outage may have begun since the first (the add-on
                # restarted before the user answered), and it answers again.
                self._outage.async_end()
                # Again at every refusal: HA starts none while one is open (or while the
                # user reconfigures), and one the user closed unanswered comes back.
                self.config_entry.async_start_reauth(self.hass)
                await asyncio.sleep(AUTH_RETRY_DELAY)
                continue
            except WrongMeter as err:
                # Not an outage: an add-on answers, another one (reinstalled, or another
                # meter at this address). Set up again, which says so in the entry and
                # retries until ours is back.
                LOGGER.warning("Energy Tracker add-on at %s: %s", self.config_entry.title, err)
                self._async_drop_pending()
                self._async_set_unavailable(err)
                self._outage.async_end()
                self.hass.config_entries.async_schedule_reload(self.config_entry.entry_id)
                return
            except (CannotConnect, InvalidData) as err:
                lost = err
            self._async_connection_lost(lost)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_DELAY)

    def _checked(self, state: MeterState) -> MeterState:
        if state.meter_id != self.info.meter_id:
            # Another meter answers at this address: its values must not land on ours.
            raise WrongMeter(
                f"meter {state.meter_id} answers instead of {self.info.meter_id}"
            )
        return state

    @callback
    def _async_stream_state(self, state: MeterState) -> None:
        if self._token_refused:
            self._token_refused = False
            LOGGER.info("The Energy Tracker add-on takes the API token again")
            async_abort_reauth_flows(self.hass, self.config_entry)
            self._async_publish(state)
            return
        if self._outage.ongoing:
            LOGGER.info("Connection to the Energy Tracker add-on restored")
            self._outage.async_end()
            self._async_publish(state)  # back from an outage: show it at once
            # The add-on may have restarted with other options (boards, relays, meters).
            self.config_entry.async_create_background_task(
                self.hass, self._async_check_info(), f"{DOMAIN} info {self.info.meter_id}"
            )
            return
        wait = self._last_publish + self.min_interval - time.monotonic()
        if (wait <= 0 and self._cancel_pending is None) or _relays_switched(self.data, state):
            # A relay that switched (a shed, a restore, the board's fail-safe) shows at once.
            self._async_drop_pending()
            self._async_publish(state)
            return
        # Throttled: keep only the newest reading and publish it when the interval ends.
        self._pending = state
        if self._cancel_pending is None:
            self._cancel_pending = async_call_later(
                self.hass, max(wait, 0), HassJob(self._async_publish_pending,
                                                 cancel_on_shutdown=True)
            )

    @callback
    def _async_publish(self, state: MeterState) -> None:
        self._last_publish = time.monotonic()
        self.async_set_updated_data(state)
        self._async_check_layout(device_layout(self.info, state))

    async def _async_check_info(self) -> None:
        try:
            info = await self.client.get_info()
        except (CannotConnect, InvalidAuth, InvalidData):
            return  # the stream reports outages; the next reconnection checks again
        if info.meter_id == self.info.meter_id and self.data is not None:
            self._async_check_layout(device_layout(info, self.data))

    @callback
    def _async_check_layout(self, layout: DeviceLayout) -> None:
        """Reload the entry when the add-on's devices changed (new relay, extra meter,
        board, channel or version), so they appear without the user's help."""
        if self._layout is None:
            self._layout = layout
        elif layout != self._layout and not self._reload_scheduled:
            LOGGER.info("The Energy Tracker add-on's devices changed; reloading its entities")
            # One reload: the new relays (first stream state) and the new info (asked
            # just after) would each schedule one; the reload makes a new coordinator.
            self._reload_scheduled = True
            self.hass.config_entries.async_schedule_reload(self.config_entry.entry_id)

    @callback
    def _async_publish_pending(self, _now: datetime) -> None:
        self._cancel_pending = None
        if (state := self._pending) is not None:
            self._pending = None
            self._async_publish(state)

    @callback
    def _async_drop_pending(self) -> None:
        self._pending = None
        if self._cancel_pending is not None:
            self._cancel_pending()
            self._cancel_pending = None

    @callback
    def _async_connection_lost(self, err: Exception) -> None:
        # The coordinator logs the start of an outage; a new kind of reason during one
        # (the add-on is back but serves another meter) is worth one more line, a refused
        # reconnection after "the add-on closed the stream" is not.
        if (not self.last_update_success and isinstance(err, InvalidData)
                and str(err) != str(self.last_exception)):
            LOGGER.warning("Energy Tracker add-on still unavailable: %s", err)
        self._async_drop_pending()  # a reading from before the loss must not revive entities
        self._async_set_unavailable(err)
        self._outage.async_lost()

    @callback
    def _async_set_unavailable(self, err: Exception) -> None:
        """async_set_update_error without its ERROR line: an add-on restart (an update, an
        options change) is routine, so the start of an outage is logged once at info."""
        self.last_exception = err
        if self.last_update_success:
            LOGGER.info("Energy Tracker add-on unavailable: %s", err)
            self.last_update_success = False
            self.async_update_listeners()


@callback
def async_abort_reauth_flows(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """The token works again (or was replaced another way): a reauth prompt left open,
    and the "Reauthentication required" repair that goes with it (aborting the flow
    leaves it), would ask the user to fix what is fixed."""
    for flow in entry.async_get_active_flows(hass, {SOURCE_REAUTH}):
        hass.config_entries.flow.async_abort(flow["flow_id"])
        ir.async_delete_issue(
            hass, HOMEASSISTANT_DOMAIN, f"config_entry_reauth_{entry.domain}_{entry.entry_id}"
        )


def _relays_switched(shown: MeterState | None, new: MeterState) -> bool:
    """Whether a relay's state or its shed mark differs from what the entities show."""
    if shown is None:
        return False
    return {r.id: (r.state, r.shed) for r in shown.relays.values()} != {
        r.id: (r.state, r.shed) for r in new.relays.values()}
