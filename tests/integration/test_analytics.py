"""Analytics entities and the export action, against the real add-on service on pty boards
(real UCI minutes, a clock the test moves; see tests/addon/analytics_rig.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_API_TOKEN, CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant, State
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.energy_tracker import export_action
from custom_components.energy_tracker.carbon import intensity_g_per_kwh
from custom_components.energy_tracker.const import (
    CONF_CHANNELS,
    CONF_CO2_INTENSITY_ENTITY,
    DOMAIN,
)
from energy_tracker_addon.history import HistoryStore, Reading
from tests.addon.analytics_rig import TOKEN, Clocks, Rig
from tests.addon.ptys import PtyPort
from tests.addon.uci import read_uci

from .conftest import HOST, Addon, wait_for

HISTORY_START = datetime.fromisoformat("2009-03-02T00:00+01:00")
LIVE_START = HISTORY_START + timedelta(days=14)


def _weeks_to_now(moment: datetime) -> timedelta:
    return timedelta(weeks=(datetime.now(UTC) - moment) // timedelta(weeks=1))


SHIFT = _weeks_to_now(LIVE_START + timedelta(minutes=10))


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """The add-on on pty boards, having learned two weeks of real history."""
    data_dir = tmp_path / "addon"
    data_dir.mkdir()
    history = read_uci(HISTORY_START, LIVE_START)
    store = HistoryStore(data_dir / "history.sqlite3", None, None)
    store.append([
        Reading(moment.to_pydatetime() + SHIFT, row.mains, 0.0, row.voltage,
                {1: row.mains, 2: row.kitchen, 3: row.water_heater_ac})
        for moment, row in zip(history.index, history.itertuples(), strict=True)
    ])
    store.close()
    ports = [PtyPort(tmp_path / "ttyRPICT"), PtyPort(tmp_path / "ttyVOLT")]
    rig = Rig(data_dir, Clocks(LIVE_START + SHIFT), *ports)
    await rig.start()
    yield rig
    await rig.stop()
    for port in ports:
        port.unplug()


@pytest.fixture
async def entry(hass: HomeAssistant, rig: Rig) -> MockConfigEntry:
    assert rig.service is not None
    await rig.etm(500)  # the gas meter's first count
    live = read_uci(LIVE_START, LIVE_START + timedelta(minutes=1))
    await rig.replay(live, SHIFT)  # a first reading
    entry = MockConfigEntry(
        domain=DOMAIN, title="Energy Tracker", unique_id=rig.service.meter_id,
        data={CONF_HOST: HOST, CONF_PORT: rig.service.port, CONF_API_TOKEN: TOKEN},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    return entry


def _entity_id(hass: HomeAssistant, entry: MockConfigEntry, key: str, domain: str) -> str:
    entity_id = er.async_get(hass).async_get_entity_id(domain, DOMAIN,
                                                        f"{entry.unique_id}_{key}")
    assert entity_id is not None, key
    return entity_id


async def test_anomaly_sensor_turns_on_with_the_reason_after_an_injected_spike(
    hass: HomeAssistant, rig: Rig, entry: MockConfigEntry
) -> None:
    anomaly_id = _entity_id(hass, entry, "anomaly", "binary_sensor")
    assert hass.states.get(anomaly_id).state == "off"  # learned from history: judging

    live = read_uci(LIVE_START + timedelta(minutes=1), LIVE_START + timedelta(minutes=7))
    await rig.replay(live, SHIFT, extra_w={2: 8000.0})  # one minute 8 kW above the real one

    await wait_for(lambda: hass.states.get(anomaly_id).state == "on", 5, "anomaly on")
    state = hass.states.get(anomaly_id)
    assert state.attributes["device_class"] == "problem"
    reason = rig.state["anomaly"]["reason"]
    assert "spike" in reason
    assert state.attributes["reason"] == reason
    assert state.attributes["last"]["kind"] == "spike"
    assert "total" in state.attributes["series"]


async def test_gas_sensor_is_an_energy_dashboard_gas_source_that_follows_the_pulses(
    hass: HomeAssistant, rig: Rig, entry: MockConfigEntry
) -> None:
    gas_id = _entity_id(hass, entry, "gas", "sensor")
    state = hass.states.get(gas_id)
    assert state.state == "0.0"
    assert state.attributes["device_class"] == "gas"
    assert state.attributes["unit_of_measurement"] == "m³"
    assert state.attributes["state_class"] == "total_increasing"

    await rig.etm(537)  # 37 pulses of 0.01 m³; shown with the next reading
    live = read_uci(LIVE_START + timedelta(minutes=1), LIVE_START + timedelta(minutes=2))
    await rig.replay(live, SHIFT)
    await wait_for(lambda: hass.states.get(gas_id).state == "0.37", 5, "gas 0.37 m³")

    co2 = hass.states.get(_entity_id(hass, entry, "co2_today", "sensor"))
    assert float(co2.state) == round(rig.state["co2_kg_today"], 3)  # recorded to the gram
    assert co2.attributes["co2_g_per_kwh"] == 52.0
    assert co2.attributes["recommendations"] == [r["text"] for r in rig.state["recommendations"]]
    rolling = hass.states.get(_entity_id(hass, entry, "rolling_power", "sensor"))
    assert float(rolling.state) == pytest.approx(rig.state["rolling_power_w"])


async def test_recommendations_read_in_home_assistant_s_language(
    hass: HomeAssistant, rig: Rig, entry: MockConfigEntry
) -> None:
    """A French Home Assistant showed the add-on's English sentences among French states,
    then French ones naming the circuits in English ("Kitchen a consommé")."""
    hass.config.language = "fr"
    assert await hass.config_entries.async_reload(entry.entry_id)  # names read at setup
    await hass.async_block_till_done()
    noon = LIVE_START + timedelta(hours=12)  # the water heater runs
    await rig.replay(read_uci(noon, noon + timedelta(minutes=30)), SHIFT)
    co2_id = _entity_id(hass, entry, "co2_today", "sensor")
    sent = rig.state["recommendations"]
    assert sent

    def energy(item: dict[str, Any]) -> str:
        kwh = item["energy_kwh"]
        return (f"{kwh:.2f} kWh" if kwh >= 0.1 else f"{kwh * 1000:.0f} Wh").replace(".", ",")

    def shown() -> list[str]:
        return list(hass.states.get(co2_id).attributes["recommendations"])

    # The last reading's figures (entities may show a reading after the add-on).
    await wait_for(lambda: len(shown()) == len(sent) and all(
        f"de l'énergie du jour ({energy(item)}, " in sentence
        for sentence, item in zip(shown(), sent, strict=True)), 10, "the last figures")
    french = {"Kitchen": "Cuisine", "Water heater & AC": "Chauffe-eau et climatisation"}
    assert {item["name"] for item in sent} <= set(french)
    for sentence, item in zip(shown(), sent, strict=True):
        assert sentence.startswith(
            f"{french[item['name']]} a consommé {item['share_pct']:.0f} % "), sentence
        # Its clause where the add-on has one ("the biggest share").
        assert ("la plus grande part" in sentence) is ("the biggest share" in item["text"])
    hass.config.language = "de"  # no wording of its own: the add-on's
    await rig.replay(read_uci(noon + timedelta(minutes=30), noon + timedelta(minutes=31)),
                     SHIFT)
    await wait_for(lambda: hass.states.get(co2_id).attributes["recommendations"]
                   == [r["text"] for r in rig.state["recommendations"]], 5, "English again")


async def test_export_action_writes_the_readings_into_a_file(
    hass: HomeAssistant, rig: Rig, entry: MockConfigEntry, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    live = read_uci(LIVE_START + timedelta(minutes=1), LIVE_START + timedelta(minutes=11))
    await rig.replay(live, SHIFT)
    hass.config.config_dir = str(tmp_path / "config")
    monkeypatch.setattr(export_action, "SHARE_DIR", tmp_path / "no-share")
    start = (LIVE_START + SHIFT).astimezone(UTC)
    end = start + timedelta(minutes=11)

    answer = await hass.services.async_call(
        DOMAIN, "export", {"start": start.isoformat(), "end": end.isoformat()},
        blocking=True, return_response=True,
    )
    path = Path(str(answer["path"]))
    assert path.parent == tmp_path / "config" / "energy_tracker_exports"
    # The meter and the span in UTC: another meter's export of the same span is another file.
    assert entry.title == "Energy Tracker"  # not written twice in the name
    assert path.name == (f"energy_tracker_{entry.unique_id[:8]}_"
                         f"{start:%Y%m%dT%H%M%SZ}_{end:%Y%m%dT%H%M%SZ}.csv")
    csv = pd.read_csv(path)
    assert answer["rows"] == len(csv) == 11
    assert list(pd.to_datetime(csv["timestamp"], utc=True)) == [
        start + timedelta(minutes=i) for i in range(11)
    ]
    sent = pd.concat([read_uci(LIVE_START, LIVE_START + timedelta(minutes=1)), live])
    assert list(csv["channel_2_power_w"]) == [round(v, 1) for v in sent["kitchen"]]

    (tmp_path / "share").mkdir()
    monkeypatch.setattr(export_action, "SHARE_DIR", tmp_path / "share")
    answer = await hass.services.async_call(
        DOMAIN, "export",
        {"start": start.isoformat(), "end": end.isoformat(), "format": "parquet"},
        blocking=True, return_response=True,
    )
    parquet = pd.read_parquet(str(answer["path"]))
    assert Path(str(answer["path"])).parent == tmp_path / "share" / DOMAIN
    assert list(parquet["channel_2_power_w"]) == list(csv["channel_2_power_w"])
    assert list(parquet["total_energy_kwh"]) == list(csv["total_energy_kwh"])

    with pytest.raises(ServiceValidationError):
        await hass.services.async_call(
            DOMAIN, "export", {"start": end.isoformat(), "end": start.isoformat()},
            blocking=True, return_response=True,
        )
    # Before the year 1 once in UTC: refused with a reason, not an unknown error.
    with pytest.raises(ServiceValidationError) as raised:
        await hass.services.async_call(
            DOMAIN, "export", {"start": "0001-01-01T00:00:00+05:00", "end": end.isoformat()},
            blocking=True, return_response=True,
        )
    assert raised.value.translation_key == "export_time_out_of_range"
    assert sorted(p.name for p in (tmp_path / "share" / DOMAIN).iterdir()) == [
        Path(str(answer["path"])).name
    ]
    # Years before 1000 keep four digits in the name.
    assert export_action.export_file_name(
        "Home", "0123456789", datetime(999, 1, 1, tzinfo=UTC), end, "csv"
    ) == f"energy_tracker_home_01234567_09990101T000000Z_{end:%Y%m%dT%H%M%SZ}.csv"
    # The default title is not written twice.
    assert export_action.export_file_name(
        "Energy Tracker", "0123456789", datetime(2026, 1, 1, tzinfo=UTC), end, "csv"
    ).startswith("energy_tracker_01234567_20260101T000000Z_")


async def test_export_onto_a_disk_that_refuses_it_says_whose_disk(
    hass: HomeAssistant, rig: Rig, entry: MockConfigEntry, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A write error on Home Assistant's side used to read "Cannot reach the add-on"
    (the client took the file's OSError for a connection error)."""
    assert rig.service is not None
    hass.config.config_dir = str(tmp_path / "config")
    monkeypatch.setattr(export_action, "SHARE_DIR", tmp_path / "no-share")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "energy_tracker_exports").write_text("")  # not a folder
    span = {"start": (LIVE_START + SHIFT).isoformat(),
            "end": (LIVE_START + SHIFT + timedelta(minutes=5)).isoformat()}
    with pytest.raises(HomeAssistantError) as ours:
        await hass.services.async_call(DOMAIN, "export", span, blocking=True)
    assert ours.value.translation_key == "export_write_failed"
    placeholders = ours.value.translation_placeholders or {}
    assert placeholders["path"].startswith(str(tmp_path / "config" / "energy_tracker_exports"))
    assert placeholders["error"] == "File exists"

    (tmp_path / "config" / "energy_tracker_exports").unlink()
    exports = rig.data_dir / "exports"  # where the add-on builds a Parquet file it sends
    exports.rmdir()
    exports.write_text("")
    with pytest.raises(HomeAssistantError) as theirs:
        await hass.services.async_call(DOMAIN, "export", {**span, "format": "parquet"},
                                       blocking=True)
    assert theirs.value.translation_key == "addon_storage_error"
    assert "writing the export failed: Not a directory" in str(
        (theirs.value.translation_placeholders or {})["detail"])
    # No half-written file is left behind on Home Assistant's side.
    assert list((tmp_path / "config" / "energy_tracker_exports").iterdir()) == []


async def test_a_carbon_intensity_sensor_drives_the_addons_co2(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Options → a grid intensity sensor; its value (any usual unit) reaches the add-on,
    and HA's CO2 sensor shows the intensity in use; what is not an intensity is refused."""
    hass.states.async_set("sensor.grid_co2", "250", {"unit_of_measurement": "gCO2eq/kWh"})
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    result = await hass.config_entries.options.async_configure(result["flow_id"], {
        CONF_CHANNELS: [str(c["id"]) for c in (await addon.get("info"))["channels"]],
        CONF_CO2_INTENSITY_ENTITY: "sensor.grid_co2"})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert loaded_entry.options[CONF_CO2_INTENSITY_ENTITY] == "sensor.grid_co2"

    async def addon_uses(g_per_kwh: float) -> bool:
        served = await addon.get("co2_intensity")
        return bool(served == {**served, "g_per_kwh": g_per_kwh, "source": "home_assistant"})

    await wait_for(lambda: addon_uses(250.0), 10, "250 g/kWh at the add-on")
    co2_sensor = er.async_get(hass).async_get_entity_id(
        "sensor", DOMAIN, f"{addon.meter_id}_co2_today")
    assert co2_sensor is not None
    await wait_for(lambda: hass.states.get(co2_sensor).attributes.get(  # type: ignore[union-attr]
        "co2_g_per_kwh") == 250.0, 10, "HA's CO2 sensor at 250 g/kWh")

    hass.states.async_set("sensor.grid_co2", "0.31", {"unit_of_measurement": "kg/kWh"})
    await wait_for(lambda: addon_uses(310.0), 10, "310 g/kWh at the add-on")
    # Unknown for a while: the add-on keeps the last value (for up to two hours).
    hass.states.async_set("sensor.grid_co2", "unavailable", {})
    hass.states.async_set("sensor.grid_co2", "42", {"unit_of_measurement": "%"})
    await hass.async_block_till_done()
    assert await addon_uses(310.0)
    assert "sensor.grid_co2 is 42 %: not a carbon intensity" in caplog.text
    # Said once for that unit, not at every change of the value (was every few seconds).
    hass.states.async_set("sensor.grid_co2", "43", {"unit_of_measurement": "%"})
    await hass.async_block_till_done()
    assert caplog.text.count("not a carbon intensity") == 1
    # More than any grid emits: the add-on refuses it, the log says so.
    hass.states.async_set("sensor.grid_co2", "5000", {"unit_of_measurement": "g/kWh"})
    await wait_for(lambda: "Could not send the carbon intensity 5000 g/kWh" in caplog.text,
                   10, "the refusal in the log")
    assert await addon_uses(310.0)

    # The add-on restarts (without the live value): sent again once it is back.
    hass.states.async_set("sensor.grid_co2", "280", {"unit_of_measurement": "kgCO2eq/MWh"})
    await wait_for(lambda: addon_uses(280.0), 10, "280 g/kWh at the add-on")
    await addon.stop()
    await wait_for(lambda: not loaded_entry.runtime_data.last_update_success, 10, "outage")
    await addon.start()
    await wait_for(lambda: addon_uses(280.0), 15, "280 g/kWh again after the restart")

    # The sensor taken out of the options: the add-on's own co2_g_per_kwh applies at once,
    # not two hours after the last value.
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    result = await hass.config_entries.options.async_configure(result["flow_id"], {
        CONF_CHANNELS: [str(c["id"]) for c in (await addon.get("info"))["channels"]]})
    await hass.async_block_till_done()
    assert CONF_CO2_INTENSITY_ENTITY not in loaded_entry.options

    async def addon_uses_its_option() -> bool:
        served = await addon.get("co2_intensity")
        return bool(served["source"] == "option" and served["updated"] is None)

    await wait_for(addon_uses_its_option, 10, "the add-on's own intensity")

    # Removing the entry withdraws its sensor's value too (the add-on kept it two hours,
    # over another Home Assistant's on the same add-on).
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    result = await hass.config_entries.options.async_configure(result["flow_id"], {
        CONF_CHANNELS: [str(c["id"]) for c in (await addon.get("info"))["channels"]],
        CONF_CO2_INTENSITY_ENTITY: "sensor.grid_co2"})
    await hass.async_block_till_done()
    await wait_for(lambda: addon_uses(280.0), 10, "280 g/kWh at the add-on again")
    assert await hass.config_entries.async_remove(loaded_entry.entry_id)
    await wait_for(addon_uses_its_option, 10, "the add-on's own intensity after removal")


@pytest.mark.parametrize(("value", "unit", "expected"), [
    ("250", "gCO2eq/kWh", 250.0), ("250", "g/kWh", 250.0), ("250", "gCO₂eq/kWh", 250.0),
    ("250", "gCO₂e/kWh", 250.0), ("250", "gCO2e/kWh", 250.0),
    ("250", "kg/MWh", 250.0), ("0.25", "kgCO2/kWh", 250.0), ("0.25", "t/MWh", 250.0),
    ("250", "%", None), ("250", None, None), ("high", "g/kWh", None), ("nan", "g/kWh", None),
    ("unknown", "g/kWh", None),
])
def test_intensity_units(value: str, unit: str | None, expected: float | None) -> None:
    attributes = {} if unit is None else {"unit_of_measurement": unit}
    assert intensity_g_per_kwh(State("sensor.grid_co2", value, attributes)) == expected
