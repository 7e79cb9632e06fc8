"""Assist: an intent that answers the current power use, and English and French sentences
for it.

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

from .appliance_entity import appliance_device_identifier
from .const import DOMAIN, LOGGER
from .coordinator import EnergyTrackerConfigEntry
from .device_lookup import device_names

INTENT_GET_POWER: Final = "EnergyTrackerGetPower"
SLOT_NAME: Final = "name"
# hassil templates; {name} is a wildcard: a CT channel's, an extra meter's or a detected
# appliance's name (relays are switched by name through HA's own intents: they are switches).
# Sentence triggers are matched whatever the pipeline's language, so one list serves both;
# hassil reads hyphens as spaces ("consomme-t-on") but tells ' from the typographic \u2019.
SENTENCES: Final = [
    "what is [the] [current] [total] (power|electricity|energy) (use|usage|consumption)",
    "how much (power|electricity|energy) (am I|are we|is the house|is the home) using"
    " [right now]",
    "how much (power|electricity) (is|does) [the] {name} (use|using|draw|drawing) [right now]",
    "quelle est la (consommation|puissance) [électrique] [totale] [actuelle]"
    " [de la maison|du logement] [en ce moment]",
    "combien [(d'électricité|d\u2019électricité|de courant|d'énergie|d\u2019énergie)]"
    " (consomme la maison|consomme le logement|consommons nous|consomme t on|on consomme)"
    " [en ce moment]",
    "combien (consomme|consomment|utilise|tire) {name} [en ce moment]",
    "quelle est la (consommation|puissance) (du|de la|de l'|des|de) {name}"
    " [en ce moment]",
]
# What the wildcard may hold before the name itself ("combien consomme la cuisine").
ARTICLES: Final = ("the ", "le ", "la ", "les ", "l'", "du ", "de la ", "de l'", "des ")
# The whole home said where a name goes ("combien consomme la maison"), unless a meter,
# circuit or appliance is called so.
HOME: Final = frozenset({"maison", "logement", "home", "house"})


@dataclass(frozen=True, slots=True)
class _Speech:
    unknown_total: str
    total: str  # {watts}
    no_such_name: str  # {name}
    unknown_named: str  # {name}
    named: str  # {name}, {about}, {watts}, {note}
    about: str
    note: str


SPEECH: Final = {
    "en": _Speech(
        unknown_total="I don't know the power use right now.",
        total="The home is using {watts} watts.",
        no_such_name="I don't know a circuit, meter or appliance called {name}.",
        unknown_named="I don't know how much power {name} uses right now.",
        named="{name} uses {about}{watts} watts{note}.",
        about="about ", note=" (an estimate)",
    ),
    "fr": _Speech(
        unknown_total="Je ne connais pas la consommation en ce moment.",
        total="La maison consomme {watts} watts.",
        no_such_name="Je ne connais aucun circuit, compteur ou appareil nommé {name}.",
        unknown_named="Je ne sais pas combien consomme {name} en ce moment.",
        named="{name} consomme {about}{watts} watts{note}.",
        about="environ ", note=" (estimation)",
    ),
}


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
        said = SPEECH.get((intent_obj.language or "en").split("-")[0].lower(), SPEECH["en"])
        found = _named_power(hass, entries, name) if name else None
        response = intent_obj.create_response()
        if found is None and (not name or _spoken(_without_article(name)) in HOME):
            watts = _total_power(entries)
            speech = (said.unknown_total if watts is None
                      else said.total.format(watts=round(watts)))
        elif found is None:
            speech = said.no_such_name.format(name=_without_article(name or ""))
        elif found.watts is None:
            speech = said.unknown_named.format(name=found.name)
        else:
            speech = said.named.format(
                name=found.name, watts=round(found.watts),
                about=said.about if found.estimate else "",
                note=said.note if found.estimate else "")
        response.async_set_speech(speech)
        return response


@dataclass(frozen=True, slots=True)
class _NamedPower:
    name: str  # as configured or shown ("Water heater & AC", "Bouilloire"), not as heard
    watts: float | None  # None: unknown right now (the add-on is unreachable, stale data)
    estimate: bool  # a NILM estimate, not a measurement


def _total_power(entries: list[EnergyTrackerConfigEntry]) -> float | None:
    powers = [e.runtime_data.data.total_power_w for e in entries
              if e.runtime_data.last_update_success]
    known = [p for p in powers if p is not None]
    return sum(known) if known else None


def _spoken(name: str) -> str:
    """A name as speech-to-text writes it: "&" comes out as a word, hyphens as spaces,
    apostrophes typographic or not, case and spacing vary."""
    return " ".join(name.casefold().replace("&", " and ").replace("-", " ")
                    .replace("\u2019", "'").split())


def _same(name: str, wanted: str) -> bool:
    """`name` is what `wanted` (as _spoken) said: "&" may be said "and" or, in French, "et"."""
    return _spoken(name) in (wanted, wanted.replace(" et ", " and "))


def _without_article(heard: str) -> str:
    """`heard` without the article the wildcard took with it ("la Cuisine" → "Cuisine")."""
    heard = heard.strip()
    low = heard.casefold().replace("\u2019", "'")  # the articles are ASCII: same offsets
    for article in ARTICLES:
        if low.startswith(article) and len(low) > len(article):
            return heard[len(article):].lstrip()
    return heard


def _named_power(hass: HomeAssistant, entries: list[EnergyTrackerConfigEntry],
                 heard: str) -> _NamedPower | None:
    """The channel, extra meter or detected appliance with this name (measured values
    first), with or without an article before it; None when no meter has one."""
    for wanted in dict.fromkeys((_spoken(heard), _spoken(_without_article(heard)))):
        if (found := _named_power_exactly(hass, entries, wanted)) is not None:
            return found
    return None


def _named_power_exactly(hass: HomeAssistant, entries: list[EnergyTrackerConfigEntry],
                         wanted: str) -> _NamedPower | None:
    for entry in entries:
        coordinator = entry.runtime_data
        live = coordinator.last_update_success
        state = coordinator.data
        for channel in coordinator.info.channels:
            # As shown ("Cuisine" for the add-on's default "Kitchen" in French), or as set.
            shown_name = coordinator.shown_name(channel.name)
            if _same(shown_name, wanted) or _same(channel.name, wanted):
                reading = state.channels.get(channel.id) if live else None
                return _NamedPower(shown_name, None if reading is None else reading.power_w,
                                   False)
        for meter in state.extra_meters.values():
            if _same(meter.name, wanted):
                return _NamedPower(meter.name, meter.total_power_w if live else None, False)
        for key, appliance in (state.appliances or {}).items():
            # As its device is shown (renamed, or "Bouilloire" in French), or the add-on's.
            names = [*device_names(
                hass, appliance_device_identifier(coordinator.info.meter_id, key),
                entry.entry_id), appliance.name]
            if any(_same(n, wanted) for n in names):
                return _NamedPower(names[0], appliance.power_w if live else None, True)
    return None
