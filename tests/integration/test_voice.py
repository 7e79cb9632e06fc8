"""Assist: switching relays by name, asking for the power use."""

from __future__ import annotations

from homeassistant.components import conversation
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.energy_tracker.const import DOMAIN
from tests.addon.ptys import PtyPort

from .boards import Boards, boards_fixture  # noqa: F401 (fixture)
from .conftest import Addon, device_with, wait_for
from .test_appliances import Clock, pty_addon, setup_entry  # noqa: F401 (fixture)
from .test_switch import served_relay


async def ask(hass: HomeAssistant, text: str, language: str = "en") -> str:
    result = await conversation.async_converse(hass, text, None, Context(), language=language)
    speech: str = result.response.speech["plain"]["speech"]
    return speech


async def set_up_assist(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    for component in ("homeassistant", "conversation", "intent"):
        assert await async_setup_component(hass, component, {})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


async def test_turn_off_a_relay_by_its_name(
    hass: HomeAssistant, addon: Addon, config_entry: MockConfigEntry,
) -> None:
    await set_up_assist(hass, config_entry)
    assert (await served_relay(addon, 1))["state"] is True
    await ask(hass, "turn off the water heater")
    assert (await served_relay(addon, 1))["state"] is False
    await ask(hass, "turn on the water heater")
    assert (await served_relay(addon, 1))["state"] is True


async def test_power_use_questions_are_answered_in_watts(
    hass: HomeAssistant, boards: Boards, addon: Addon, config_entry: MockConfigEntry,
) -> None:
    boards.powers = [1873.4, 420.0, 0.0]
    await set_up_assist(hass, config_entry)
    await wait_for(lambda: config_entry.runtime_data.data.total_power_w == 1873.4, 10,
                   "the reading")
    for question in ("what is the power use", "how much electricity are we using right now",
                     "What is the current power consumption?"):
        assert await ask(hass, question) == "The home is using 1873 watts."
    assert await ask(hass, "how much power is the kitchen using") == "Kitchen uses 420 watts."
    # Said with the name as configured; "&" as speech-to-text writes it.
    assert await ask(hass, "how much power does the water heater and ac use") == (
        "Water heater & AC uses 0 watts.")
    # A name no meter has is said to be unknown, not "unknown right now".
    assert await ask(hass, "how much power is the garage using") == (
        "I don't know a circuit, meter or appliance called garage.")


async def test_power_use_questions_in_french_are_answered_in_french(
    hass: HomeAssistant, boards: Boards, addon: Addon, config_entry: MockConfigEntry,
) -> None:
    """A French pipeline matched no sentence: "combien consomme la cuisine" fell through to
    Home Assistant's own intents ("Désolé, je ne suis pas au courant…")."""
    hass.config.language = "fr"
    boards.powers = [1873.4, 420.0, 0.0]
    await set_up_assist(hass, config_entry)
    await wait_for(lambda: config_entry.runtime_data.data.total_power_w == 1873.4, 10,
                   "the reading")
    for question in ("Quelle est la consommation actuelle ?",
                     "combien d\u2019électricité consommons-nous en ce moment",
                     "combien d'énergie consomme-t-on", "combien consomme la maison",
                     "quelle est la puissance de la maison"):
        assert await ask(hass, question, "fr") == "La maison consomme 1873 watts.", question
    # The channel by its shown name (the add-on's default "Kitchen" in French), with the
    # article French puts before it, or by the add-on's name.
    assert await ask(hass, "combien consomme la cuisine ?", "fr") == (
        "Cuisine consomme 420 watts.")
    assert await ask(hass, "combien consomme la kitchen ?", "fr") == (
        "Cuisine consomme 420 watts.")
    assert await ask(hass, "quelle est la puissance du chauffe-eau et climatisation",
                     "fr") == "Chauffe-eau et climatisation consomme 0 watts."
    assert await ask(hass, "quelle est la puissance du Water heater et AC", "fr") == (
        "Chauffe-eau et climatisation consomme 0 watts.")
    assert await ask(hass, "combien consomme le garage", "fr") == (
        "Je ne connais aucun circuit, compteur ou appareil nommé garage.")
    await addon.stop()
    await wait_for(lambda: not config_entry.runtime_data.last_update_success, 10,
                   "the outage")
    assert await ask(hass, "combien consomme la maison", "fr") == (
        "Je ne connais pas la consommation en ce moment.")
    assert await ask(hass, "combien consomme la cuisine", "fr") == (
        "Je ne sais pas combien consomme Cuisine en ce moment.")


async def test_detected_appliances_are_asked_for_as_their_devices_are_named(
    hass: HomeAssistant, pty_addon: tuple[Addon, PtyPort, Clock],  # noqa: F811 (fixture)
) -> None:
    """In French the kettle's device is "Bouilloire"; the add-on only knows "Kettle"."""
    addon, _port, _clock = pty_addon
    hass.config.language = "fr"
    for component in ("homeassistant", "conversation", "intent"):
        assert await async_setup_component(hass, component, {})
    await setup_entry(hass, addon)
    # The model needs a window of readings first: the figure is not known yet.
    assert await ask(hass, "combien consomme la bouilloire", "fr") == (
        "Je ne sais pas combien consomme Bouilloire en ce moment.")
    registry = dr.async_get(hass)
    kettle = device_with(registry, (DOMAIN, f"{addon.meter_id}_appliance_kettle"))
    assert kettle is not None
    registry.async_update_device(kettle.id, name_by_user="Bouilloire du chalet")
    assert await ask(hass, "combien consomme la bouilloire du chalet", "fr") == (
        "Je ne sais pas combien consomme Bouilloire du chalet en ce moment.")
    # An English pipeline finds it by the add-on's name too.
    assert await ask(hass, "how much power does the kettle use") == (
        "I don't know how much power Bouilloire du chalet uses right now.")


async def test_power_use_unknown_when_the_addon_is_gone(
    hass: HomeAssistant, addon: Addon, config_entry: MockConfigEntry,
) -> None:
    await set_up_assist(hass, config_entry)
    await addon.stop()
    await wait_for(lambda: not config_entry.runtime_data.last_update_success, 10,
                   "the outage")
    assert await ask(hass, "what is the power use") == "I don't know the power use right now."
    assert await ask(hass, "how much power is the kitchen using") == (
        "I don't know how much power Kitchen uses right now.")


async def test_sentences_work_when_assist_loads_after_the_integration(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
) -> None:
    for component in ("homeassistant", "conversation", "intent"):
        assert await async_setup_component(hass, component, {})
    await hass.async_block_till_done()
    answer = await ask(hass, "what is the power use")
    assert answer.startswith("The home is using ")
    assert answer.removeprefix("The home is using ").removesuffix(" watts.").isdigit()
