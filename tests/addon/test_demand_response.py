"""Simulated relays and demand response, measured: the service reads a simulated meter.

The test starts the `SimulatedMeter` itself at a minute of the replay where all three
switched circuits draw power (at real-time speed a minute of the replay outlasts each test),
and the service reads its two ptys like real boards.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from energy_tracker_addon.config import Options
from energy_tracker_addon.service import AddonService
from energy_tracker_addon.simulator import ROW_SECONDS, SimulatedMeter, load_replay

from .polling import wait_until
from .test_api import TOKEN, auth

pytestmark = pytest.mark.usefixtures("socket_enabled")

# Printed to 0.1 W after the vest scaling, then corrected with a 0.01 V voltage.
TOLERANCE_W = 2.0


@pytest.fixture(scope="module")
def row() -> dict[str, float]:
    """The first replay minute where every switched circuit draws over 500 W."""
    replay = load_replay()
    c = replay.columns
    busy = np.flatnonzero(
        (c["water_heater_ac_w"] > 500) & (c["kitchen_w"] > 500) & (c["laundry_w"] > 500)
    )
    index = int(busy[0])
    values = {name: float(column[index]) for name, column in c.items()}
    values["start_s"] = index * ROW_SECONDS
    return values


@pytest.fixture
async def service(tmp_path: Path, row: dict[str, float]) -> AsyncIterator[AddonService]:
    replay = load_replay()
    simulator = SimulatedMeter(start=replay.first + timedelta(seconds=row["start_s"]))
    rpict, voltage = await simulator.start()
    options = Options(api_token=TOKEN, rpict_port=rpict, voltage_port=voltage)
    try:
        async with _serving(options, tmp_path / "data") as service:
            yield service
    finally:
        await simulator.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def _call(session: aiohttp.ClientSession, service: AddonService, method: str,
                path: str, body: Any = None) -> Any:
    async with session.request(method, service.url + path, json=body, headers=auth()) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


@contextlib.asynccontextmanager
async def _serving(options: Options, data_dir: Path) -> AsyncIterator[AddonService]:
    """A started service, with readings coming in and every relay known; stopped after."""
    service = AddonService(options, data_dir, host="127.0.0.1", port=0)
    await service.start()
    try:
        await wait_until(lambda: service.meter.snapshot()["available"]
                         and all(service.relays.available(r) for r in service.relays.relays))
        yield service
    finally:
        await service.stop()


async def _next_reading(service: AddonService) -> dict[str, Any]:
    lines = service.meter.snapshot()["boards"]["rpict"]["lines_ok"]
    await wait_until(lambda: service.meter.snapshot()["boards"]["rpict"]["lines_ok"] > lines)
    return service.meter.snapshot()


async def test_switching_a_simulated_relay_off_removes_its_circuit(
    service: AddonService, session: aiohttp.ClientSession, row: dict[str, float]
) -> None:
    before = await _next_reading(service)
    assert before["total_power_w"] == pytest.approx(row["mains_w"], abs=TOLERANCE_W)
    heater_channel = next(c for c in before["channels"] if c["id"] == 3)
    assert heater_channel["power_w"] == pytest.approx(row["water_heater_ac_w"], abs=TOLERANCE_W)

    relay = await _call(session, service, "PUT", "/api/v1/relays/1", {"state": False})
    assert (relay["name"], relay["state"]) == ("Water heater", False)
    after = await _next_reading(service)
    assert after["total_power_w"] == pytest.approx(
        row["mains_w"] - row["water_heater_ac_w"], abs=TOLERANCE_W)
    assert next(c for c in after["channels"] if c["id"] == 3)["power_w"] == 0.0
    assert after["boards"]["voltage"]["relays"] == [False, True, True]
    assert [r["state"] for r in after["relays"]] == [False, True, True]

    # Laundry has no CT channel: only the mains loses it.
    await _call(session, service, "PUT", "/api/v1/relays/3", {"state": False})
    later = await _next_reading(service)
    assert later["total_power_w"] == pytest.approx(
        row["mains_w"] - row["water_heater_ac_w"] - row["laundry_w"], abs=TOLERANCE_W)


async def _prioritise_with_the_laundry_just_on(
    session: aiohttp.ClientSession, service: AddonService
) -> None:
    """Priorities laundry 10, water heater 20, kitchen 30; the laundry (600 s minimum on
    time) was just switched on again, so it is inside it."""
    for relay_id, settings in ((3, {"priority": 10, "min_on_s": 600}),
                               (1, {"priority": 20}), (2, {"priority": 30})):
        await _call(session, service, "PUT", f"/api/v1/relays/{relay_id}", settings)
    await _call(session, service, "PUT", "/api/v1/relays/3", {"state": False})
    await _call(session, service, "PUT", "/api/v1/relays/3", {"state": True})
    await _next_reading(service)


async def test_shed_by_priority_honours_min_on_time_and_stops_at_the_limit(
    service: AddonService, session: aiohttp.ClientSession, row: dict[str, float]
) -> None:
    mains, heater, kitchen = row["mains_w"], row["water_heater_ac_w"], row["kitchen_w"]
    await _prioritise_with_the_laundry_just_on(session, service)

    # Only the water heater is needed to get under this limit.
    first = await _call(session, service, "POST", "/api/v1/shed",
                        {"limit_w": mains - heater + 100})
    assert first["limit_w"] == mains - heater + 100
    assert first["total_before_w"] == pytest.approx(mains, abs=TOLERANCE_W)
    assert first["total_after_w"] == pytest.approx(mains - heater, abs=TOLERANCE_W)
    assert first["reached"] is True
    assert [(s["id"], s["name"]) for s in first["shed"]] == [(1, "Water heater")]
    assert first["shed"][0]["drop_w"] == pytest.approx(heater, abs=TOLERANCE_W)
    assert first["skipped"] == [{"id": 3, "reason": "min_on_time"}]

    # Reduce by more than the kitchen can give: it goes too, and the limit is not reached.
    second = await _call(session, service, "POST", "/api/v1/shed", {"reduce_w": kitchen + 500})
    assert [s["id"] for s in second["shed"]] == [2]
    assert second["shed"][0]["drop_w"] == pytest.approx(kitchen, abs=TOLERANCE_W)
    assert second["skipped"] == [{"id": 3, "reason": "min_on_time"}, {"id": 1, "reason": "off"}]
    assert second["reached"] is False

    relays = (await _call(session, service, "GET", "/api/v1/relays"))["relays"]
    assert [(r["id"], r["state"], r["shed"]) for r in relays] == [
        (1, False, True), (2, False, True), (3, True, False),
    ]

    # Restore: highest priority first (kitchen 30, then the water heater 20), staggered.
    loop = asyncio.get_running_loop()
    started = loop.time()
    restored = await _call(session, service, "POST", "/api/v1/restore", {"stagger_s": 1.5})
    elapsed = loop.time() - started
    assert restored == {"restored": [{"id": 2, "name": "Kitchen"},
                                     {"id": 1, "name": "Water heater"}], "failed": [],
                        "pending": [], "interrupted": False}
    assert elapsed >= 1.5
    changed = {r["id"]: r["last_changed"]
               for r in (await _call(session, service, "GET", "/api/v1/relays"))["relays"]}
    assert changed[2] is not None
    assert changed[1] is not None
    after = await _next_reading(service)
    assert after["total_power_w"] == pytest.approx(mains, abs=TOLERANCE_W)
    assert [r["shed"] for r in after["relays"]] == [False, False, False]
    # Nothing left to restore.
    assert await _call(session, service, "POST", "/api/v1/restore") == {
        "restored": [], "failed": [], "pending": [], "interrupted": False}


async def test_a_shed_right_after_a_switch_measures_from_a_reading_that_shows_it(
    service: AddonService, session: aiohttp.ClientSession, row: dict[str, float]
) -> None:
    """The total read before a switch is no baseline: the heater switched off just before
    the shed would count as part of the kitchen's drop."""
    mains, heater, kitchen = row["mains_w"], row["water_heater_ac_w"], row["kitchen_w"]
    await _call(session, service, "PUT", "/api/v1/relays/2", {"priority": 5})
    await _next_reading(service)
    await _call(session, service, "PUT", "/api/v1/relays/1", {"state": False})
    result = await _call(session, service, "POST", "/api/v1/shed", {"reduce_w": 100})

    assert result["total_before_w"] == pytest.approx(mains - heater, abs=TOLERANCE_W)
    assert result["limit_w"] == pytest.approx(mains - heater - 100, abs=TOLERANCE_W)
    assert [s["id"] for s in result["shed"]] == [2]
    assert result["shed"][0]["drop_w"] == pytest.approx(kitchen, abs=TOLERANCE_W)
    assert result["total_after_w"] == pytest.approx(mains - heater - kitchen, abs=TOLERANCE_W)


async def test_a_shed_during_a_restore_wins_at_once(
    service: AddonService, session: aiohttp.ClientSession, row: dict[str, float]
) -> None:
    """A restore used to hold the shedding lock through its stagger: a shed sent during a
    slow restore waited for it (minutes), and so did the restore's own answer."""
    await _next_reading(service)
    first = await _call(session, service, "POST", "/api/v1/shed", {"limit_w": 0})
    assert len(first["shed"]) == 3
    restore = asyncio.create_task(
        _call(session, service, "POST", "/api/v1/restore", {"stagger_s": 600}))

    async def one_back() -> bool:
        relays = (await _call(session, service, "GET", "/api/v1/relays"))["relays"]
        return sum(bool(r["state"]) for r in relays) == 1

    await wait_until(one_back)  # the first back, then a 10-minute wait
    again = await _call(session, service, "POST", "/api/v1/shed", {"limit_w": 0})
    assert [s["id"] for s in again["shed"]] == [r["id"] for r in first["shed"][:1]]
    async with asyncio.timeout(10):  # not the 600 s stagger
        restored = await restore
    assert len(restored["restored"]) == 1
    assert restored["interrupted"] is True
    relays = (await _call(session, service, "GET", "/api/v1/relays"))["relays"]
    assert [(r["state"], r["shed"]) for r in relays] == [(False, True)] * 3


async def test_shed_ties_go_to_the_larger_load_first(
    service: AddonService, session: aiohttp.ClientSession, row: dict[str, float]
) -> None:
    # All priorities equal (50): the relay whose CT channel reads more goes first.
    heater, kitchen = row["water_heater_ac_w"], row["kitchen_w"]
    assert heater != kitchen
    larger = 1 if heater > kitchen else 2
    result = await _call(session, service, "POST", "/api/v1/shed",
                         {"limit_w": row["mains_w"] - max(heater, kitchen) + 100})
    assert [s["id"] for s in result["shed"]] == [larger]
    assert result["reached"] is True
    # More than the house draws: everything, and the limit it reports is 0 (was -1 MW).
    everything = await _call(session, service, "POST", "/api/v1/shed", {"reduce_w": 1e6})
    assert everything["limit_w"] == 0


async def test_a_restart_keeps_the_shed_set_and_the_minimum_on_times(
    tmp_path: Path, row: dict[str, float], session: aiohttp.ClientSession
) -> None:
    # The board (here the simulator on its ptys) keeps its relays while the add-on
    # restarts, as after an update or a crash.
    replay = load_replay()
    simulator = SimulatedMeter(start=replay.first + timedelta(seconds=row["start_s"]))
    rpict, voltage = await simulator.start()
    options = Options(api_token=TOKEN, rpict_port=rpict, voltage_port=voltage)
    mains, heater = row["mains_w"], row["water_heater_ac_w"]
    try:
        async with _serving(options, tmp_path / "data") as service:
            await _prioritise_with_the_laundry_just_on(session, service)
            first = await _call(session, service, "POST", "/api/v1/shed",
                                {"limit_w": mains - heater + 100})
            assert [s["id"] for s in first["shed"]] == [1]
        async with _serving(options, tmp_path / "data") as service:
            relays = (await _call(session, service, "GET", "/api/v1/relays"))["relays"]
            assert [(r["id"], r["state"], r["shed"]) for r in relays] == [
                (1, False, True), (2, True, False), (3, True, False),
            ]
            await _next_reading(service)
            # The laundry came on a few seconds ago, before the restart: still protected.
            second = await _call(session, service, "POST", "/api/v1/shed", {"limit_w": 1.0})
            assert [s["id"] for s in second["shed"]] == [2]
            assert second["skipped"] == [{"id": 3, "reason": "min_on_time"},
                                         {"id": 1, "reason": "off"}]
            # Everything the sheds of both runs switched off comes back.
            restored = await _call(session, service, "POST", "/api/v1/restore",
                                   {"stagger_s": 0})
            assert [r["id"] for r in restored["restored"]] == [2, 1]
            after = await _next_reading(service)
            assert after["total_power_w"] == pytest.approx(mains, abs=TOLERANCE_W)
    finally:
        await simulator.stop()


async def test_the_simulated_board_keeps_its_relays_across_a_restart(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    # No ports: the add-on's own simulated meter, which lives and restarts with it.
    options = Options(api_token=TOKEN)
    async with _serving(options, tmp_path / "data") as service:
        switched = await _call(session, service, "PUT", "/api/v1/relays/1", {"state": False})
        await _next_reading(service)
    assert switched["last_changed"] is not None
    async with _serving(options, tmp_path / "data") as service:
        reading = await _next_reading(service)
        assert reading["boards"]["voltage"]["relays"] == [False, True, True]
        assert [r["state"] for r in reading["relays"]] == [False, True, True]
        # When it was switched is kept too (it came back null after every restart).
        assert reading["relays"][0]["last_changed"] == switched["last_changed"]
        # The water heater's circuit (CT channel 3) is still out of the readings.
        assert next(c for c in reading["channels"] if c["id"] == 3)["power_w"] == 0.0




async def test_a_relay_inside_its_minimum_off_time_is_restored_once_it_is_over(
    service: AddonService, session: aiohttp.ClientSession
) -> None:
    """A heat pump's compressor must not start again within minutes of stopping; a restore
    that comes sooner switches it on once the minimum off time is over, without a second
    restore (a refusal would have left it off for good)."""
    for relay_id in (1, 2):
        await _call(session, service, "PUT", f"/api/v1/relays/{relay_id}", {"min_off_s": 60})
    shed = await _call(session, service, "POST", "/api/v1/shed", {"limit_w": 0})
    assert {r["id"] for r in shed["shed"]} == {1, 2, 3}
    report = await _call(session, service, "POST", "/api/v1/restore", {"stagger_s": 0})
    assert report["restored"] == [{"id": 3, "name": "Laundry"}]
    assert report["failed"] == []
    pending = {p["id"]: p for p in report["pending"]}
    assert sorted(pending) == [1, 2]
    assert all(45 <= p["in_s"] <= 60 for p in pending.values())
    relays = {r["id"]: r for r in (await _call(session, service, "GET", "/api/v1/relays"))[
        "relays"]}
    assert (relays[1]["state"], relays[1]["shed"]) == (False, True)
    # Its time over (here: lowered to none), the water heater comes back by itself.
    await _call(session, service, "PUT", "/api/v1/relays/1", {"min_off_s": 0})
    await wait_until(lambda: service.relays.get(1).state is True, timeout=10)
    assert not service.relays.get(1).shed
    assert service.relays.get(2).state is False
    # A shed before the kitchen's time is over (here one that needs to switch nothing)
    # cancels its restore: it stays off and shed after its time.
    await _call(session, service, "POST", "/api/v1/shed", {"limit_w": 1_000_000})
    await _call(session, service, "PUT", "/api/v1/relays/2", {"min_off_s": 0})
    await asyncio.sleep(5)
    assert (service.relays.get(2).state, service.relays.get(2).shed) == (False, True)
