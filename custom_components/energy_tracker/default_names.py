"""The add-on's default channel and relay names, shown in Home Assistant's language.

The add-on's options ship English names (Mains, Kitchen, ... in addon/config.yaml): a
French Home Assistant showed "Puissance Kitchen" and a "Water heater" relay Assist would
not find as "chauffe-eau". A name still at its default is shown translated; a name the
user chose is shown as written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from homeassistant.core import HomeAssistant
from homeassistant.helpers.translation import async_get_translations

from .const import DOMAIN

# The add-on's default names → their translation keys (strings.json: device.default_<key>).
ADDON_DEFAULT_NAMES: Final = {
    "Mains": "mains",
    "Kitchen": "kitchen",
    "Water heater & AC": "water_heater_ac",
    "Water heater": "water_heater",
    "Laundry": "laundry",
}


async def async_shown_default_names(hass: HomeAssistant) -> Mapping[str, str]:
    """Each default name as Home Assistant's language says it (English: unchanged)."""
    strings = await async_get_translations(hass, hass.config.language, "device", {DOMAIN})
    return {
        name: strings.get(f"component.{DOMAIN}.device.default_{key}.name", name)
        for name, key in ADDON_DEFAULT_NAMES.items()
    }
