"""Several meters: extra RPICT boards on their own ptys, their states, counters and comparison."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from energy_tracker_addon.config import ExtraMeterConfig, Options, OptionsError, parse_options
from energy_tracker_addon.extra_meters import PERIODS_FILE
from energy_tracker_addon.meter import CHECK_INTERVAL_S
from energy_tracker_addon.persistence import CounterStore
from energy_tracker_addon.service import AddonService

from .polling import wait_until
from .ptys import PtyPort

pytestmark = pytest.mark.usefixtures("socket_enabled")

TOKEN = "extra-meters-test-token-0123456789abcdefghijk"
# 07:00 in Paris: an hour of readings stays within the local day.
START = datetime(2026, 1, 15, 6, 0, tzinfo=UTC)
STEP_S = 360.0  # ten readings an hour, within stale_after_s


class FakeClocks:
    """The service's monotonic and wall clocks, moved by the test."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def monotonic(self) -> float:
        return self.seconds

    def wall(self) -> datetime:
        return START + timedelta(seconds=self.seconds)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def get(session: aiohttp.ClientSession, url: str, path: str,
              status: int = 200) -> Any:
    async with session.get(f"{url}/api/v1/{path}",
                           headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == status, path
        return await resp.json()


def main_and_garage(pty_port: Callable[[str], PtyPort], stale_after_s: int
                    ) -> tuple[PtyPort, PtyPort, Options]:
    """Two plugged ptys, the main meter's and a garage meter's, and options using them."""
    main, garage = pty_port("ttyMAIN"), pty_port("ttyGARAGE")
    main.plug()
    garage.plug()
    options = Options(
        api_token=TOKEN, rpict_port=str(main.path), stale_after_s=stale_after_s,
        nilm_enabled=False,
        extra_meters=(ExtraMeterConfig("garage", "Garage", rpict_port=str(garage.path)),),
    )
    return main, garage, options


async def both_ports_open(service: AddonService) -> None:
    """Opening a port discards what was written before: a line sent earlier is lost."""
    def open_() -> bool:
        garage = service.extra_meters.get("garage")
        return (service.meter.board_connected("rpict") and garage is not None
                and garage.board_connected("rpict"))

    await wait_until(open_, what="both meters' ports open")


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[tuple[str, ...], float]:
    """/metrics as {(sample name, meter label[, board[, reason]]): value} for the extra
    meters' series."""
    async with session.get(f"{url}/metrics",
                           headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 200
        text = await resp.text()
    return {(sample.name, sample.labels["meter"],
             *(sample.labels[k] for k in ("board", "reason") if k in sample.labels)):
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples if "meter" in sample.labels}


async def test_two_meters_on_two_ptys_have_their_own_state_counters_and_comparison(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "Europe/Paris")
    main, garage, options = main_and_garage(pty_port, stale_after_s=600)
    clocks = FakeClocks()
    data_dir = tmp_path / "data"
    service = AddonService(options, data_dir, host="127.0.0.1", port=0,
                           clock=clocks.monotonic, wall_clock=clocks.wall)
    await service.start()
    try:
        await both_ports_open(service)
        lines = {"main": 0, "garage": 0}

        async def reading(name: str, port: PtyPort, mains_w: float) -> None:
            await port.write(f"11 {mains_w} 0.0 0.0 20.0\r\n".encode())
            lines[name] += 1

            async def arrived() -> bool:
                state = await get(session, service.url, f"meters/{name}/state")
                return bool(state["boards"]["rpict"]["lines_ok"] == lines[name])

            await wait_until(arrived, what=f"{name} reading {lines[name]}")

        # One hour at a steady 1000 W in the house and 500 W in the garage.
        for step in range(11):
            clocks.seconds = step * STEP_S
            await reading("main", main, 1000.0)
            await reading("garage", garage, 500.0)

        garage_state = await get(session, service.url, "meters/garage/state")
        main_state = await get(session, service.url, "state")
        assert garage_state["total_power_w"] == 500.0
        assert garage_state["total_energy_kwh"] == pytest.approx(0.5, abs=1e-6)
        assert main_state["total_power_w"] == 1000.0
        assert main_state["total_energy_kwh"] == pytest.approx(1.0, abs=1e-6)
        # Each meter has its own stable id; the summary rides on the main state.
        assert garage_state["meter_id"] != main_state["meter_id"]
        assert garage_state["meter_id"] == (data_dir / "meters/garage/meter_id").read_text().strip()
        assert [m["id"] for m in main_state["meters"]] == ["garage"]
        assert main_state["meters"][0]["total_energy_kwh"] == garage_state["total_energy_kwh"]

        listed = (await get(session, service.url, "meters"))["meters"]
        assert [(m["id"], m["name"], m["source"], m["total_power_w"]) for m in listed] == [
            ("main", "Energy Tracker", "serial", 1000.0), ("garage", "Garage", "serial", 500.0)
        ]

        # A garbled line from the garage's hat is counted against the garage.
        await garage.write(b"11 500.0 0.0\r\n")

        async def garage_rejected() -> bool:
            state = await get(session, service.url, "meters/garage/state")
            return bool(state["boards"]["rpict"]["lines_rejected"] == 1)

        await wait_until(garage_rejected, what="garage line rejected")
        # Prometheus sees the garage beside the main meter's own series.
        metrics = await scrape(session, service.url)
        assert metrics == {
            ("energy_tracker_extra_meter_power_watts", "garage"): 500.0,
            ("energy_tracker_extra_meter_energy_kwh", "garage"): pytest.approx(0.5, abs=1e-6),
            ("energy_tracker_extra_meter_up", "garage"): 1.0,
            ("energy_tracker_extra_meter_serial_lines_total", "garage", "rpict"): 12.0,
            ("energy_tracker_extra_meter_serial_lines_rejected_total", "garage", "rpict",
             "fields"): 1.0,
        }

        day = await get(session, service.url, "compare?period=day")
        assert day["start"] == "2026-01-15T00:00:00+01:00"
        assert day["total_kwh"] == pytest.approx(1.5, abs=1e-6)
        shares = {m["id"]: (m["energy_kwh"], m["share_pct"]) for m in day["meters"]}
        assert shares["main"] == (pytest.approx(1.0, abs=1e-6), pytest.approx(66.67))
        assert shares["garage"] == (pytest.approx(0.5, abs=1e-6), pytest.approx(33.33))
        assert main_state["meter_comparison"]["meters"] == day["meters"]
        # No reading yet in the hour that has just begun: unknown, not 0.
        hour = await get(session, service.url, "compare?period=hour")
        assert {m["energy_kwh"] for m in hour["meters"]} == {None}
        await get(session, service.url, "compare?period=week", status=400)
        await get(session, service.url, "meters/cellar/state", status=404)

        # The garage board goes silent: its power is unknown, its energy stays.
        clocks.seconds += 700

        async def garage_stale() -> bool:
            meters = (await get(session, service.url, "meters"))["meters"]
            return meters[1]["available"] is False

        await wait_until(garage_stale, timeout=CHECK_INTERVAL_S + 2, what="garage stale")
        # The periods are fsynced while running (each persist interval), not only at a stop.
        assert "garage" in json.loads((data_dir / "meters" / PERIODS_FILE).read_text())
        stale = (await get(session, service.url, "meters"))["meters"][1]
        assert stale["total_power_w"] is None
        assert stale["total_energy_kwh"] == pytest.approx(0.5, abs=1e-6)
        metrics = await scrape(session, service.url)
        assert math.isnan(metrics["energy_tracker_extra_meter_power_watts", "garage"])
        assert metrics["energy_tracker_extra_meter_up", "garage"] == 0.0
        assert metrics["energy_tracker_extra_meter_energy_kwh", "garage"] == pytest.approx(0.5)
    finally:
        await service.stop()

    # Each meter's counters are its own, persisted when it stops.
    garage_counters = CounterStore(data_dir / "meters/garage/energy_counters.json").load()
    assert garage_counters is not None
    assert garage_counters.total_kwh == pytest.approx(0.5, abs=1e-6)
    # Restarted, both meters continue from their own counters.
    clocks.seconds += 10
    service = AddonService(options, data_dir, host="127.0.0.1", port=0,
                           clock=clocks.monotonic, wall_clock=clocks.wall)
    await service.start()
    try:
        listed = (await get(session, service.url, "meters"))["meters"]
        assert [m["total_energy_kwh"] for m in listed] == [
            pytest.approx(1.0, abs=1e-6), pytest.approx(0.5, abs=1e-6)
        ]
        day = await get(session, service.url, "compare?period=day")
        assert day["total_kwh"] == pytest.approx(1.5, abs=1e-6)
    finally:
        await service.stop()


async def test_the_main_meters_share_counts_its_day_before_extra_meters_were_added(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The comparison's main meter is its "Energy today", not only since the garage came."""
    monkeypatch.setenv("TZ", "Europe/Paris")
    main, garage, two_meters = main_and_garage(pty_port, stale_after_s=600)
    main_alone = dataclasses.replace(two_meters, extra_meters=())
    clocks = FakeClocks()
    data_dir = tmp_path / "data"

    async def hour_at_1kw(service: AddonService, ports: dict[str, PtyPort]) -> None:
        for _step in range(11):
            for name, port in ports.items():
                path = "state" if name == "main" else f"meters/{name}/state"
                seen = (await get(session, service.url, path))["boards"]["rpict"]["lines_ok"]
                await port.write(b"11 1000.0 0.0 0.0 20.0\r\n")

                async def arrived(path: str = path, seen: int = seen) -> bool:
                    state = await get(session, service.url, path)
                    return bool(state["boards"]["rpict"]["lines_ok"] > seen)

                await wait_until(arrived, what=f"a reading of {name}")
            clocks.seconds += STEP_S
        clocks.seconds -= STEP_S

    service = AddonService(main_alone, data_dir, host="127.0.0.1", port=0,
                           clock=clocks.monotonic, wall_clock=clocks.wall)
    await service.start()
    try:
        await wait_until(lambda: service.meter.board_connected("rpict"), what="port open")
        await hour_at_1kw(service, {"main": main})
    finally:
        await service.stop()
    # The same morning the user adds the garage meter: the add-on restarts.
    clocks.seconds += 10
    service = AddonService(two_meters, data_dir, host="127.0.0.1", port=0,
                           clock=clocks.monotonic, wall_clock=clocks.wall)
    await service.start()
    try:
        await both_ports_open(service)
        await hour_at_1kw(service, {"main": main, "garage": garage})
        state = await get(session, service.url, "state")
        assert state["energy_today_kwh"] == pytest.approx(2.0, abs=1e-3)
        day = await get(session, service.url, "compare?period=day")
        shares = {m["id"]: (m["energy_kwh"], m["share_pct"]) for m in day["meters"]}
        assert shares == {"main": (pytest.approx(2.0, abs=1e-3), pytest.approx(66.67, abs=0.1)),
                          "garage": (pytest.approx(1.0, abs=1e-3), pytest.approx(33.33, abs=0.1))}
        assert day["total_kwh"] == pytest.approx(3.0, abs=1e-3)
    finally:
        await service.stop()


async def test_without_extra_meters_the_state_has_no_meter_fields(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession,
) -> None:
    main = pty_port("ttyMAIN")
    main.plug()
    options = Options(api_token=TOKEN, rpict_port=str(main.path), nilm_enabled=False)
    service = AddonService(options, tmp_path / "data", host="127.0.0.1", port=0)
    await service.start()
    try:
        state = await get(session, service.url, "state")
        assert "meters" not in state
        assert "meter_comparison" not in state
        assert [m["id"] for m in (await get(session, service.url, "meters"))["meters"]] == [
            "main"
        ]
        assert not (tmp_path / "data/meters").exists()
    finally:
        await service.stop()


@pytest.mark.parametrize(
    ("meters", "message"),
    [
        ([{"id": "garage", "name": "A"}, {"id": "garage", "name": "B"}],
         "extra_meters[1].id: meter id 'garage' is used twice (got 'garage')"),
        ([{"id": "Garage 2", "name": "A"}],
         "extra_meters[0].id: not a slug (a-z, 0-9 and _, at most 32) (got 'Garage 2')"),
        ([{"id": "main", "name": "A"}],
         "extra_meters[0].id: meter id 'main' is the main meter's (got 'main')"),
        # Its data folder is meters/<id>: a final newline was let through by "$".
        ([{"id": "garage\n", "name": "A"}],
         "extra_meters[0].id: not a slug (a-z, 0-9 and _, at most 32) (got 'garage\\n')"),
        ([{"id": "shed", "name": "A", "rpict_model": "rpict9"}],
         "extra_meters[0].rpict_model: value must be one of"),
    ],
)
def test_bad_extra_meters_are_refused_naming_the_entry(
    meters: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(OptionsError) as error:
        parse_options({"extra_meters": meters})
    assert str(error.value).startswith(message)


def test_extra_meters_parse_with_defaults() -> None:
    options = parse_options({"extra_meters": [{"id": "shed_1", "name": "Shed"}]})
    assert options.extra_meters == (ExtraMeterConfig("shed_1", "Shed", "", "rpict3t1", 230.0),)


async def test_extra_meters_stay_live_on_the_stream_while_the_main_board_is_silent(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession,
) -> None:
    main, garage, options = main_and_garage(pty_port, stale_after_s=10)
    clocks = FakeClocks()
    service = AddonService(options, tmp_path / "data", host="127.0.0.1", port=0,
                           clock=clocks.monotonic, wall_clock=clocks.wall)
    await service.start()
    try:
        await both_ports_open(service)
        await main.write(b"11 1000.0 0.0 0.0 20.0\r\n")
        await garage.write(b"11 500.0 0.0 0.0 20.0\r\n")

        async def both_read() -> bool:
            listed = (await get(session, service.url, "meters"))["meters"]
            return [m["total_power_w"] for m in listed] == [1000.0, 500.0]

        await wait_until(both_read, what="a reading of each meter")
        async with session.ws_connect(f"{service.url}/api/v1/stream",
                                      headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
            first = (await ws.receive_json(timeout=5))["data"]
            # The main board falls silent; the garage goes on.
            clocks.seconds += 20
            while (state := (await ws.receive_json(timeout=CHECK_INTERVAL_S + 5))["data"])[
                    "available"]:
                pass
            await garage.write(b"11 800.0 0.0 0.0 20.0\r\n")
            while (state := (await ws.receive_json(timeout=5))["data"])["meters"][0][
                    "total_power_w"] != 800.0:
                pass
            assert state["available"] is False
            assert state["total_power_w"] is None  # the main meter's own value stays unknown
            assert state["seq"] == first["seq"] + 1  # the stale transition only: no reading
    finally:
        await service.stop()


async def test_a_simulated_main_meter_is_listed_as_simulated(
    tmp_path: Path, session: aiohttp.ClientSession,
) -> None:
    service = AddonService(Options(api_token=TOKEN, nilm_enabled=False), tmp_path / "data",
                           host="127.0.0.1", port=0)
    await service.start()
    try:
        info = await get(session, service.url, "info")
        listed = (await get(session, service.url, "meters"))["meters"]
        assert [(m["id"], m["source"]) for m in listed] == [("main", "simulated")]
        assert info["source"] == "simulated"
    finally:
        await service.stop()


async def test_an_extra_meters_log_lines_name_it(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], caplog: pytest.LogCaptureFixture,
) -> None:
    """A garbled line or a silent board in the garage must not read as the house's."""
    main, garage, options = main_and_garage(pty_port, stale_after_s=5)
    clocks = FakeClocks()
    service = AddonService(options, tmp_path / "data", host="127.0.0.1", port=0,
                           clock=clocks.monotonic, wall_clock=clocks.wall)
    await service.start()
    try:
        await both_ports_open(service)
        garage_meter = service.extra_meters.get("garage")
        assert garage_meter is not None
        await main.write(b"11 1000.0 0.0 0.0 20.0\r\n")
        await garage.write(b"11 500.0 0.0 0.0 20.0\r\n")
        await wait_until(lambda: garage_meter.available and service.meter.available,
                         what="both meters read")
        caplog.clear()
        await garage.write(b"11 500.0 0.0\r\n")  # too few fields, from the garage only
        await wait_until(lambda: "Rejected" in caplog.text, what="the garbled line logged")
        clocks.seconds += 6  # the garage board falls silent; the house's goes on
        await main.write(b"11 1000.0 0.0 0.0 20.0\r\n")
        await wait_until(lambda: not garage_meter.available, timeout=CHECK_INTERVAL_S + 2,
                         what="garage stale")
        lines = [r.getMessage() for r in caplog.records
                 if r.name == "energy_tracker_addon.meter"]
        assert any(line.startswith("Extra meter garage: Rejected rpict line") for line in lines)
        assert "Extra meter garage: No RPICT reading for 5 s: values unavailable" in lines
        assert not any(line.startswith(("Rejected", "No RPICT")) for line in lines), lines
    finally:
        await service.stop()
