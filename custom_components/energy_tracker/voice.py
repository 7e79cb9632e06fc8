"""Assist: an intent that answers the current power use, and English sentences for it.

Home Assistant's built-in HassGetState only answers for sensors the user exposed by name
("what is the Energy Tracker Total power"), and power sensors are not exposed by default;
these sentences work out of the box. Relays need nothing here: their switches are exposed
by default and named after the relay, so "turn off the water heater" is HassTurnOff.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final

import voluptuous as vol
from homeassistant.const import EVENT_COMPONENT_LOADED
from homeassistant.core import Context, Event, HomeAssistant
from homeassistant.helpers import intent
from homeassistant.helpers.script import ScriptRunResult
from homeassistant.helpers.trigger import (
    async_initialize_triggers,
    async_validate_trigger_config,
)

from .const import DOMAIN, LOGGER
from .coordinator import EnergyTrackerConfigEntry

INTENT_GET_POWER: Final = "EnergyTrackerGetPower"
SLOT_NAME: Final = "name"
# hassil templates; {name} is a wildcard: a CT channel's, an extra meter's or a detected
# appliance's name (relays are switched by name through HA's own intents: they are switches).
SENTENCES: Final = [
    "what is [the] [current] [total] (power|electricity|energy) (use|usage|consumption)",
    "how much (power|electricity|energy) (am I|are we|is the house|is the home) using"
    " [right now]",
    "how much (power|electricity) (is|does) [the] {name} (use|using|draw|drawing) [right now]",
]


async def async_setup_voice(hass: HomeAssistant) -> None:
    """Register the intent; attach the sentences once the conversation agent is loaded."""
    intent.async_register(hass, GetPowerIntentHandler())

    if "conversation" in hass.config.components:
        await _async_attach_sentences(hass)
        return

    async def _on_component_loaded(event: Event[Any]) -> None:
        if event.data.get("component") == "conversation":
            remove_listener()
            await _async_attach_sentences(hass)

    remove_listener = hass.bus.async_listen(EVENT_COMPONENT_LOADED, _on_component_loaded)


async def _async_attach_sentences(hass: HomeAssistant) -> None:
    async def _answer(run_variables: dict[str, Any],
                      context: Context | None = None) -> ScriptRunResult:
        trigger = run_variables["trigger"]
        slots = {SLOT_NAME: {"value": name}} if (name := trigger["slots"].get(SLOT_NAME)) \
            else {}
        response = await intent.async_handle(
            hass, DOMAIN, INTENT_GET_POWER, slots, text_input=trigger["sentence"],
            context=context, language=trigger["user_input"].get("language"),
        )
        return ScriptRunResult(
            conversation_response=response.speech["plain"]["speech"],
            service_response=None, variables={},
        )

    def _log(level: int, msg: str, **kwargs: Any) -> None:
        LOGGER.log(level, "Assist sentences: %s", msg, **kwargs)

    config = await async_validate_trigger_config(
        hass, [{"platform": "conversation", "command": SENTENCES}]
    )
    await async_initialize_triggers(hass, config, _answer, DOMAIN, "Assist sentences", _log)


class GetPowerIntentHandler(intent.IntentHandler):
    """The power the meters measure: in total, or of one channel, extra meter or detected
    appliance by name."""

    intent_type = INTENT_GET_POWER
    description = "Tells how much electrical power the home (or one circuit) uses right now"
    slot_schema: ClassVar[dict[Any, Any]] = {vol.Optional(SLOT_NAME): intent.non_empty_string}

    async def async_handle(self, intent_obj: intent.Intent) -> intent.IntentResponse:
        """Answer with the watts from the latest pushed state."""
        hass = intent_obj.hass
        slots = self.async_validate_slots(intent_obj.slots)
        name: str | None = slots.get(SLOT_NAME, {}).get("value")
        entries: list[EnergyTrackerConfigEntry] = hass.config_entries.async_loaded_entries(
            DOMAIN
        )
        response = intent_obj.create_response()
        if not name:
            watts = _total_power(entries)
            speech = ("I don't know the power use right now." if watts is None
                      else f"The home is using {round(watts)} watts.")
        elif (found := _named_power(entries, name)) is None:
            speech = f"I don't know a circuit, meter or appliance called {name.strip()}."
        elif found.watts is None:
            speech = f"I don't know how much power {found.name} uses right now."
        else:
            about, note = ("about ", " (an estimate)") if found.estimate else ("", "")
            speech = f"{found.name} uses {about}{round(found.watts)} watts{note}."
        response.async_set_speech(speech)
        return response


@dataclass(frozen=True, slots=True)
class _NamedPower:
    name: str  # as configured ("Water heater & AC"), not as heard
    watts: float | None  # None: unknown right now (the add-on is unreachable, stale data)
    estimate: bool  # a NILM estimate, not a measurement


def _total_power(entries: list[EnergyTrackerConfigEntry]) -> float | None:
    powers = [e.runtime_data.data.total_power_w for e in entries
              if e.runtime_data.last_update_success]
    known = [p for p in powers if p is not None]
    return sum(known) if known else None


def _spoken(name: str) -> str:
    """A name as speech-to-text writes it: "&" comes out as "and", case and spacing vary."""
    return " ".join(name.casefold().replace("&", " and ").split())


def _named_power(entries: list[EnergyTrackerConfigEntry], name: str) -> _NamedPower | None:
    """The channel, extra meter or detected appliance with this name (measured values
    first); None when no meter has one."""
    wanted = _spoken(name)
    for entry in entries:
        coordinator = entry.runtime_data
        live = coordinator.last_update_success
        state = coordinator.data
        for channel in coordinator.info.channels:
            if _spoken(channel.name) == wanted:
                reading = state.channels.get(channel.id) if live else None
                return _NamedPower(channel.name, None if reading is None else reading.power_w,
                                   False)
        for meter in state.extra_meters.values():
            if _spoken(meter.name) == wanted:
                return _NamedPower(meter.name, meter.total_power_w if live else None, False)
        for appliance in (state.appliances or {}).values():
            if _spoken(appliance.name) == wanted:
                return _NamedPower(appliance.name, appliance.power_w if live else None, True)
    return None
