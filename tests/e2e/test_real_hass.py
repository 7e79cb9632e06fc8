"""End to end: a real `hass` process with the integration, fed by a real add-on process.

Both processes are started exactly as the demo starts them (scripts/demo.py), on free
ports in a scratch directory; the simulated meter replays real data at 60x so values move
quickly. Everything is observed through Home Assistant's own REST and WebSocket APIs.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_socket

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import demo

# pytest-homeassistant-custom-component blocks sockets in every test; these talk to real
# processes on 127.0.0.1.
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("socket_enabled")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Env:
    def __init__(self, procs: demo.Processes, workdir: Path, addon_port: int, token: str) -> None:
        self.procs = procs
        self.workdir = workdir
        self.addon_port = addon_port
        self.token = token

    async def states(self, session: aiohttp.ClientSession) -> dict[str, dict[str, Any]]:
        async with session.get(f"{self.procs.hass_url}/api/states",
                               headers={"Authorization": f"Bearer {self.token}"}) as resp:
            resp.raise_for_status()
            return {state["entity_id"]: state for state in await resp.json()}

    async def our_entities(self, session: aiohttp.ClientSession) -> dict[str, dict[str, Any]]:
        """Entity registry entries of our platform, by entity id."""
        async with demo.HAWebSocket.connect(session, self.procs.hass_url, self.token) as ws:
            registry = await ws.call("config/entity_registry/list")
        return {e["entity_id"]: e for e in registry if e["platform"] == "energy_tracker"}

    async def addon(self, session: aiohttp.ClientSession, path: str) -> Any:
        headers = {"Authorization": f"Bearer {self.procs.addon_token}"}
        async with session.get(f"{self.procs.addon_url}/api/v1/{path}",
                               headers=headers) as resp:
            resp.raise_for_status()
            return await resp.json()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    pytest_socket.enable_socket()  # module scope: set up before any test's socket_enabled
    workdir = tmp_path_factory.mktemp("e2e")
    addon_port, hass_port = free_port(), free_port()
    with demo.running_demo(workdir, addon_port=addon_port, hass_port=hass_port,
                           addon_options={"simulation_speed": 60}) as procs:
        try:
            token = asyncio.run(demo.provision(procs, addon_port))
        except BaseException:
            print((workdir / "hass.log").read_text()[-5000:])
            print((workdir / "addon.log").read_text()[-5000:])
            raise
        yield Env(procs, workdir, addon_port, token)


def by_key(entities: dict[str, dict[str, Any]], suffix: str) -> str:
    matches = [eid for eid, e in entities.items() if e["unique_id"].endswith(suffix)]
    assert len(matches) == 1, f"one entity with unique_id ending {suffix!r}: {matches}"
    return matches[0]


def test_sensors_have_the_units_and_classes_the_energy_dashboard_needs(env: Env) -> None:
    async def check() -> None:
        async with aiohttp.ClientSession() as session:
            info = await env.addon(session, "info")
            deadline = time.monotonic() + 60
            while True:
                entities = await env.our_entities(session)
                states = await env.states(session)
                total_power = by_key(entities, "_total_power")
                if states.get(total_power, {}).get("state") not in (None, "unavailable",
                                                                    "unknown"):
                    break
                assert time.monotonic() < deadline, f"{total_power} never got a value"
                await asyncio.sleep(1)

            expected = {
                "_total_power": ("power", "W", "measurement"),
                "_total_energy": ("energy", "kWh", "total_increasing"),
                "_voltage": ("voltage", "V", "measurement"),
                "_frequency": ("frequency", "Hz", "measurement"),
                "_gas": ("gas", "m³", "total_increasing"),
            }
            for channel in info["channels"]:
                expected[f"_channel_{channel['id']}_power"] = ("power", "W", "measurement")
                expected[f"_channel_{channel['id']}_energy"] = ("energy", "kWh",
                                                                "total_increasing")
            for suffix, (device_class, unit, state_class) in expected.items():
                attributes = states[by_key(entities, suffix)]["attributes"]
                assert attributes.get("device_class") == device_class, suffix
                assert attributes.get("unit_of_measurement") == unit, suffix
                assert attributes.get("state_class") == state_class, suffix

    asyncio.run(check())


def test_states_follow_the_replay(env: Env) -> None:
    async def check() -> None:
        async with aiohttp.ClientSession() as session:
            entities = await env.our_entities(session)
            power_id = by_key(entities, "_total_power")
            energy_id = by_key(entities, "_total_energy")
            powers: set[str] = set()
            energies: list[float] = []
            for _ in range(20):
                states = await env.states(session)
                powers.add(states[power_id]["state"])
                energies.append(float(states[energy_id]["state"]))
                await asyncio.sleep(1)
            # 20 s at 60x is 20 replayed minutes: several distinct readings.
            assert len(powers - {"unavailable", "unknown"}) >= 3, powers
            assert energies == sorted(energies), "energy went backwards"
            assert energies[-1] > energies[0]
            # HA shows exactly what the add-on serves: every reading HA displays was
            # one of the add-on's readings (polled 4x per reading, so none is missed).
            # HA publishes at most every 5 s (the default minimum update interval) the
            # reading of the moment, up to one reading interval (2 s) old: what it shows
            # in the first 8 s may predate the first poll here.
            addon_seen: set[float] = set()
            ha_seen: list[float] = []
            for i in range(40):
                addon_power = (await env.addon(session, "state"))["total_power_w"]
                if addon_power is not None:
                    addon_seen.add(round(float(addon_power), 3))
                ha_state = (await env.states(session))[power_id]["state"]
                if i >= 16 and ha_state not in ("unavailable", "unknown"):
                    ha_seen.append(round(float(ha_state), 3))
                await asyncio.sleep(0.5)
            assert ha_seen
            assert set(ha_seen) <= addon_seen, (ha_seen, addon_seen)

    asyncio.run(check())


# HA compiles statistics every 5 minutes of wall time: the wait (up to 420 s, below) plus a
# fresh `env` can pass the suite-wide 300 s.
@pytest.mark.timeout(600)
def test_energy_dashboard_validation_reports_no_issue(env: Env) -> None:
    """After the recorder's first statistics run, energy/validate is clean for our sensors."""
    async def check() -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            demo.HAWebSocket.connect(session, env.procs.hass_url, env.token) as ws,
        ):
                prefs = await ws.call("energy/get_prefs")
                sources = {source["type"]: source for source in prefs["energy_sources"]}
                assert set(sources) == {"grid", "gas"}, prefs  # the simulated board counts gas
                stat_ids = [demo.grid_energy_statistic(sources["grid"]),
                            sources["gas"]["stat_energy_from"]]
                stat_ids += [d["stat_consumption"] for d in prefs["device_consumption"]]
                # Statistics are compiled every 5 minutes (at :00, :05, ... plus ~10 s);
                # until then validation can only say "statistics_not_defined".
                deadline = time.monotonic() + 420
                while True:
                    result: dict[str, Any] = await ws.call("energy/validate")
                    issue_types = {issue["type"]
                                   for group in result["energy_sources"]
                                   + result["device_consumption"]
                                   for issue in group}
                    if issue_types != {"statistics_not_defined"}:
                        break
                    assert time.monotonic() < deadline, "statistics never compiled"
                    await asyncio.sleep(5)
                result["stat_ids"] = stat_ids
                return result

    result = asyncio.run(check())
    assert len(result["stat_ids"]) >= 3  # the grid total, gas and at least one channel
    assert result["energy_sources"] == [[], []], result
    assert result["device_consumption"] == [[] for _ in result["device_consumption"]], result
    assert len(result["device_consumption"]) == len(result["stat_ids"]) - 2
    # The devices are the circuits (Kitchen, Water heater & AC), not the mains channel
    # that the grid total already counts.
    assert sorted(result["stat_ids"][2:]) == ["sensor.energy_tracker_kitchen_energy",
                                              "sensor.energy_tracker_water_heater_ac_energy"]


def test_the_demo_raises_no_repairs_issue(env: Env) -> None:
    """Home Assistant and the add-on in one time zone (/etc/timezone may say "Etc/UTC"
    where $TZ says "UTC"), the add-on reachable, its models loaded: nothing to repair."""
    async def issues() -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            demo.HAWebSocket.connect(session, env.procs.hass_url, env.token) as ws,
        ):
            await asyncio.sleep(3)  # a few readings: each is checked
            listed: dict[str, Any] = await ws.call("repairs/list_issues")
            return [issue for issue in listed["issues"] if issue["domain"] == "energy_tracker"]

    assert asyncio.run(issues()) == []


def test_an_automation_saved_in_the_editor_appears(env: Env) -> None:
    """The editor's save answered ok, and no automation appeared: the demo's configuration
    did not load automations.yaml."""
    async def check() -> None:
        headers = {"Authorization": f"Bearer {env.token}"}
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{env.procs.hass_url}/api/config/automation/config/demo_check",
                headers=headers, json={
                    "alias": "Demo check", "triggers": [{"trigger": "homeassistant",
                                                         "event": "shutdown"}],
                    "actions": [{"action": "logbook.log", "data": {
                        "name": "Demo", "message": "stops"}}]}) as resp:
                assert resp.status == 200, await resp.text()
            deadline = time.monotonic() + 10
            while "automation.demo_check" not in await env.states(session):
                assert time.monotonic() < deadline, "the automation did not appear"
                await asyncio.sleep(0.2)

    asyncio.run(check())


def test_assist_switches_a_relay_and_answers_the_power_use(env: Env) -> None:
    """Through HA's conversation API, as a voice assistant would send it."""
    async def converse(session: aiohttp.ClientSession, text: str) -> str:
        async with session.post(
            f"{env.procs.hass_url}/api/conversation/process",
            headers={"Authorization": f"Bearer {env.token}"},
            json={"text": text, "language": "en"},
        ) as resp:
            resp.raise_for_status()
            speech: str = (await resp.json())["response"]["speech"]["plain"]["speech"]
            return speech

    async def water_heater(session: aiohttp.ClientSession) -> dict[str, Any]:
        relays = (await env.addon(session, "relays"))["relays"]
        relay: dict[str, Any] = next(r for r in relays if r["name"] == "Water heater")
        return relay

    async def check() -> None:
        async with aiohttp.ClientSession() as session:
            assert (await water_heater(session))["state"] is True
            await converse(session, "turn off the water heater")
            deadline = time.monotonic() + 10
            while (await water_heater(session))["state"] is not False:
                assert time.monotonic() < deadline, "the relay did not switch off"
                await asyncio.sleep(0.2)
            # The simulated mains loses the water heater's circuit: its CT reads 0 W.
            circuit = next(c for c in (await env.addon(session, "state"))["channels"]
                           if c["name"].startswith("Water heater"))
            while True:
                state = await env.addon(session, "state")
                power = next(c for c in state["channels"] if c["id"] == circuit["id"])
                if power["power_w"] == 0:
                    break
                assert time.monotonic() < deadline, "the circuit kept drawing power"
                await asyncio.sleep(0.2)
            await converse(session, "turn on the water heater")
            while (await water_heater(session))["state"] is not True:
                assert time.monotonic() < deadline + 10, "the relay did not switch on"
                await asyncio.sleep(0.2)

            entities = await env.our_entities(session)
            power_id = by_key(entities, "_total_power")
            before = float((await env.states(session))[power_id]["state"])
            answer = await converse(session, "what is the power use")
            after = float((await env.states(session))[power_id]["state"])
            numbers = {float(word) for word in answer.replace(".", " ").split()
                       if word.isdigit()}
            assert {round(before), round(after)} & {round(n) for n in numbers}, answer

    asyncio.run(check())


def test_addon_restart_makes_entities_unavailable_then_back_within_10_s(env: Env) -> None:
    async def check() -> None:
        async with aiohttp.ClientSession() as session:
            entities = await env.our_entities(session)
            power_id = by_key(entities, "_total_power")
            env.procs.addon.send_signal(signal.SIGTERM)
            env.procs.addon.wait(20)
            deadline = time.monotonic() + 15
            while (await env.states(session))[power_id]["state"] != "unavailable":
                assert time.monotonic() < deadline, "entity stayed available without the add-on"
                await asyncio.sleep(0.5)

            env.procs.addon = demo.start_addon(env.workdir / "addon-data", env.addon_port,
                                               env.workdir / "addon.log")
            started = time.monotonic()
            while (await env.states(session))[power_id]["state"] in ("unavailable", "unknown"):
                assert time.monotonic() - started < 10, "not back within 10 s of the restart"
                await asyncio.sleep(0.25)

    asyncio.run(check())


# The demo (the README's first command) run a second time on its own data: Home Assistant
# is onboarded already and no longer serves /api/onboarding; the entry exists already.


async def our_entries(procs: demo.Processes, token: str) -> list[dict[str, Any]]:
    """The energy_tracker entries, once none is still setting up."""
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(f"{procs.hass_url}/api/config/config_entries/entry",
                                   headers={"Authorization": f"Bearer {token}"}) as resp:
                resp.raise_for_status()
                entries = [e for e in await resp.json() if e["domain"] == "energy_tracker"]
            if all(e["state"] not in ("not_loaded", "setup_in_progress") for e in entries):
                return entries
            assert time.monotonic() < deadline, entries
            await asyncio.sleep(0.5)


def test_the_demo_starts_again_on_its_own_data(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    workdir.mkdir()
    addon_port, hass_port = free_port(), free_port()
    for run in ("first", "second"):
        with demo.running_demo(workdir, addon_port=addon_port, hass_port=hass_port,
                               addon_options={"simulation_speed": 60}) as procs:
            try:
                token = asyncio.run(demo.provision(procs, addon_port))
                entries = asyncio.run(our_entries(procs, token))
            except BaseException:
                print((workdir / "hass.log").read_text()[-3000:])
                raise
        assert [e["state"] for e in entries] == ["loaded"], (run, entries)
