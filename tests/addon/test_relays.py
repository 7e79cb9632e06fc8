"""Relays over the API (docs/api.md, "Relays and demand response"), through a real service.

The voltage board is a pseudo-terminal the test answers for (or stays silent on), so every
command goes the whole way: HTTP → relay manager → serial link → pty → ack → response.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from energy_tracker_addon import service as service_module
from energy_tracker_addon.config import DEFAULT_RELAYS, Options, RelayConfig
from energy_tracker_addon.protocol import CommandFrame, frame, parse_command_line
from energy_tracker_addon.relays import SETTINGS_FILE, RelayManager
from energy_tracker_addon.service import AddonService

from .polling import wait_until
from .ptys import PtyPort
from .test_api import TOKEN, auth, rpict_line

pytestmark = pytest.mark.usefixtures("socket_enabled")


class BoardPeer:
    """The test's side of the voltage board's pty: reads commands, answers like a board."""

    def __init__(self, port: PtyPort) -> None:
        self.port = port
        self.relays = "111"
        self.seq = 0

    async def send(self, type_: str, *fields: str) -> None:
        self.seq += 1
        await self.port.write(frame(type_, str(self.seq), *fields))

    async def command(self, timeout: float = 3.0) -> CommandFrame:
        """The next command other than the HELLO the service sends on every connect and
        the `WDT 0` it sends after every hello with the watchdog off (acknowledged here)."""
        while True:
            command = parse_command_line(await self.port.read_frame_line(timeout))
            if (command.command, command.args) == ("WDT", ("0",)):
                await self.send("ETA", str(command.cmd_id), "OK", self.relays)
            elif command.command != "HELLO":
                return command

    async def acknowledge_watchdog(self) -> None:
        """Read and acknowledge the `WDT` the service sends after the hello."""
        command = parse_command_line(await self.port.read_frame_line())
        assert command.command == "WDT"
        await self.send("ETA", str(command.cmd_id), "OK", self.relays)

    async def acknowledge(self, relays_after: str) -> CommandFrame:
        """Read the next command and acknowledge it with these relay states."""
        command = await self.command()
        await self.send("ETA", str(command.cmd_id), "OK", relays_after)
        return command

    async def boot(self, *hello_after: str, version: str = "1.0.0") -> None:
        """Answer the service's HELLO with an ack, the hello (`hello_after`: its fields
        after `cal`) and a measurement."""
        hello = parse_command_line(await self.port.read_frame_line())
        assert hello.command == "HELLO"
        await self.send("ETA", str(hello.cmd_id), "OK", self.relays)
        self.seq = -1
        await self.send("ETH", version, str(len(self.relays)), "1.8", *hello_after)
        await self.send("ETM", "230.0", "50.00", self.relays, "0")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@pytest.fixture
def ports(pty_port: Callable[[str], PtyPort]) -> tuple[PtyPort, PtyPort]:
    rpict, voltage = pty_port("ttyRPICT"), pty_port("ttyVOLT")
    rpict.plug()
    voltage.plug()
    return rpict, voltage


def _options(rpict: PtyPort, voltage: PtyPort, **changes: Any) -> Options:
    return Options(api_token=TOKEN, rpict_port=str(rpict.path), voltage_port=str(voltage.path),
                   **changes)


@contextlib.asynccontextmanager
async def _board_service(
    tmp_path: Path, ports: tuple[PtyPort, PtyPort], **changes: Any
) -> AsyncIterator[tuple[AddonService, BoardPeer]]:
    """A started service on these ports (options `changes` from the defaults) and the
    test's side of its voltage board, not booted yet; stopped after."""
    service = AddonService(_options(*ports, **changes), tmp_path / "data", host="127.0.0.1",
                           port=0)
    await service.start()
    try:
        yield service, BoardPeer(ports[1])
    finally:
        await service.stop()


@pytest.fixture
async def board(
    tmp_path: Path, ports: tuple[PtyPort, PtyPort]
) -> AsyncIterator[tuple[AddonService, BoardPeer]]:
    """A running service whose voltage board (3 relays, all on) the test plays."""
    async with _board_service(tmp_path, ports) as (service, peer):
        await peer.boot()
        await wait_until(lambda: all(service.relays.available(r) for r in service.relays.relays))
        yield service, peer


async def _get(session: aiohttp.ClientSession, service: AddonService, path: str) -> Any:
    async with session.get(service.url + path, headers=auth()) as resp:
        assert resp.status == 200
        return await resp.json()


async def _relay(session: aiohttp.ClientSession, service: AddonService, relay_id: int) -> Any:
    relays = (await _get(session, service, "/api/v1/relays"))["relays"]
    return next(r for r in relays if r["id"] == relay_id)


async def test_relays_are_listed_with_their_board_states(
    board: tuple[AddonService, BoardPeer], session: aiohttp.ClientSession
) -> None:
    service, _ = board
    relays = (await _get(session, service, "/api/v1/relays"))["relays"]
    assert [(r["id"], r["name"], r["source"], r["state"], r["available"]) for r in relays] == [
        (1, "Water heater", "board", True, True),
        (2, "Kitchen", "board", True, True),
        (3, "Laundry", "board", True, True),
    ]
    assert (await _get(session, service, "/api/v1/state"))["relays"] == relays


async def test_switching_reports_the_state_the_board_acknowledged(
    board: tuple[AddonService, BoardPeer], session: aiohttp.ClientSession
) -> None:
    service, peer = board
    url = service.url + "/api/v1/relays/2"
    before = await _relay(session, service, 2)

    answering = asyncio.create_task(peer.acknowledge("101"))
    async with session.put(url, json={"state": False}, headers=auth()) as resp:
        assert resp.status == 200
        body = await resp.json()
    command = await answering
    assert (command.command, command.args) == ("RELAY", ("2", "0"))
    assert body["state"] is False
    assert body["last_changed"] is not None
    # Newer than anything streamed before the answer, and than the relay's own change.
    assert body["revision"] >= before["revision"] + 2
    streamed = await _relay(session, service, 2)
    assert (streamed["state"], streamed["revision"]) == (False, body["revision"])

    # The board says OK but its relay did not move (welded contact): the ack's state wins.
    answering = asyncio.create_task(peer.acknowledge("101"))
    async with session.put(url, json={"state": True}, headers=auth()) as resp:
        assert resp.status == 200
        assert (await resp.json())["state"] is False
    assert (await answering).args == ("2", "1")


async def test_unacknowledged_command_times_out_and_keeps_the_state(
    board: tuple[AddonService, BoardPeer], session: aiohttp.ClientSession
) -> None:
    service, peer = board
    await peer.acknowledge_watchdog()
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with session.put(service.url + "/api/v1/relays/1", json={"state": False},
                           headers=auth()) as resp:
        elapsed = loop.time() - started
        assert resp.status == 504
        assert await resp.json() == {"error": "relay_timeout"}
    assert (await peer.command()).args == ("1", "0")  # it was sent; nobody answered
    assert 0.9 <= elapsed < 1.8
    # A board that does not answer is not sent more: what it has not read would all run
    # at once when it wakes up (helper 75: seven queued switches replayed in 3 ms).
    relay = await _relay(session, service, 1)
    assert (relay["state"], relay["available"]) == (None, False)
    async with session.put(service.url + "/api/v1/relays/1", json={"state": True},
                           headers=auth()) as resp:
        assert resp.status == 503
    await peer.send("ETM", "230.0", "50.00", "111", "0")
    await wait_until(lambda: service.relays.available(service.relays.get(1)))
    assert (await _relay(session, service, 1))["state"] is True


async def test_a_switch_whose_client_left_before_it_was_read_is_not_carried_out(
    board: tuple[AddonService, BoardPeer], session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The add-on frozen (SIGSTOP, a long stall): Home Assistant's switches waited in the
    kernel, timed out (HA said they failed) and all ran when it woke up, flipping the relay
    back and forth (helper 75: six in 7 ms)."""
    service, peer = board
    await peer.acknowledge_watchdog()
    body = b'{"state": false}'
    request = (f"PUT /api/v1/relays/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    def frozen_while_a_client_sends_and_gives_up() -> None:
        with socket.create_connection(("127.0.0.1", service.port)) as client:
            client.sendall(request)
        time.sleep(0.2)  # its FIN arrives too

    asyncio.get_running_loop().call_soon(frozen_while_a_client_sends_and_gives_up)
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        await peer.command(timeout=2)
    assert (await _relay(session, service, 1))["state"] is True
    assert "PUT /api/v1/relays/1 not carried out: its client had gone" in caplog.text
    # A client that waits is served as ever.
    answering = asyncio.create_task(peer.acknowledge("011"))
    async with session.put(service.url + "/api/v1/relays/1", json={"state": False},
                           headers=auth()) as resp:
        assert resp.status == 200
    await answering


async def test_a_relay_change_is_streamed_at_once(
    board: tuple[AddonService, BoardPeer], session: aiohttp.ClientSession,
) -> None:
    """Relay states went out only with the next reading: a pulse switched between two
    readings (or while the hat is silent) never reached Home Assistant."""
    service, peer = board
    async with session.ws_connect(service.url + "/api/v1/stream", headers=auth()) as ws:
        first = (await ws.receive_json(timeout=5))["data"]
        assert [r["state"] for r in first["relays"]] == [True, True, True]
        # No reading comes from the hat here: only the relay change can bring a message.
        await peer.send("ETM", "230.0", "50.00", "011", "0")
        message = (await ws.receive_json(timeout=5))["data"]
        assert [r["state"] for r in message["relays"]] == [False, True, True]


async def test_a_silent_board_s_relays_become_unavailable(
    tmp_path: Path, ports: tuple[PtyPort, PtyPort], session: aiohttp.ClientSession,
) -> None:
    """A board that stopped talking (hung, its side's power cut) kept showing its relays
    available with their last states for ever, though its watchdog may have opened them."""
    async with _board_service(tmp_path, ports, stale_after_s=2) as (service, peer):
        await peer.boot()
        await wait_until(lambda: service.relays.available(service.relays.get(1)))
        assert (await _relay(session, service, 1))["state"] is True

        async def unavailable() -> bool:
            relay = await _relay(session, service, 1)
            return (relay["state"], relay["available"]) == (None, False)

        await wait_until(unavailable, timeout=10, what="relay 1 unavailable")
        assert service.meter.board_connected("voltage")  # the port itself is still open
        await peer.send("ETM", "230.0", "50.00", "011", "0")
        await wait_until(lambda: service.relays.available(service.relays.get(1)))
        assert (await _relay(session, service, 1))["state"] is False


async def test_board_refusal_answers_502_and_keeps_the_state(
    board: tuple[AddonService, BoardPeer], session: aiohttp.ClientSession
) -> None:
    service, peer = board

    async def refuse() -> None:
        command = await peer.command()
        await peer.send("ETA", str(command.cmd_id), "EBADARG", "111")

    refusing = asyncio.create_task(refuse())
    async with session.put(service.url + "/api/v1/relays/3", json={"state": False},
                           headers=auth()) as resp:
        assert resp.status == 502
        assert await resp.json() == {"error": "relay_rejected", "detail": "EBADARG"}
    await refusing
    assert (await _relay(session, service, 3))["state"] is True


async def test_bad_requests_get_clear_errors(
    board: tuple[AddonService, BoardPeer], session: aiohttp.ClientSession
) -> None:
    service, _ = board
    cases: list[tuple[str, str, Any, int, str]] = [
        ("PUT", "/api/v1/relays/9", {"state": True}, 404, "not_found"),
        ("PUT", "/api/v1/relays/x", {"state": True}, 404, "not_found"),
        ("PUT", "/api/v1/relays/1", {"state": "on"}, 400, "invalid"),
        ("PUT", "/api/v1/relays/1", {"priority": 101}, 400, "invalid"),
        ("PUT", "/api/v1/relays/1", {"min_on_s": -1}, 400, "invalid"),
        ("PUT", "/api/v1/relays/1", {"priority": True}, 400, "invalid"),
        ("PUT", "/api/v1/relays/1", {"colour": "red"}, 400, "invalid"),
        ("PUT", "/api/v1/relays/1", {}, 400, "invalid"),
        ("PUT", "/api/v1/relays/1", "not json{", 400, "invalid"),
        ("POST", "/api/v1/shed", {}, 400, "invalid"),
        ("POST", "/api/v1/shed", {"limit_w": 1000, "reduce_w": 5}, 400, "invalid"),
        ("POST", "/api/v1/shed", {"limit_w": -5}, 400, "invalid"),
        ("POST", "/api/v1/shed", {"reduce_w": 0}, 400, "invalid"),
        ("POST", "/api/v1/restore", {"stagger_s": -1}, 400, "invalid"),
        # No RPICT reading yet: nothing to measure a shed against.
        ("POST", "/api/v1/shed", {"limit_w": 1000}, 503, "unavailable"),
    ]
    for method, path, body, status, error in cases:
        data = body if isinstance(body, str) else json.dumps(body)
        async with session.request(method, service.url + path, data=data,
                                   headers=auth()) as resp:
            answer = await resp.json()
            assert (resp.status, answer["error"]) == (status, error), (path, body, answer)
            if status == 400:
                assert answer["detail"]
    relay = await _relay(session, service, 1)
    assert (relay["state"], relay["priority"], relay["min_on_s"]) == (True, 50, 0)


async def test_unplugged_board_answers_503(
    board: tuple[AddonService, BoardPeer], session: aiohttp.ClientSession
) -> None:
    service, peer = board
    peer.port.unplug()
    await wait_until(lambda: not service.relays.available(service.relays.get(1)))
    async with session.put(service.url + "/api/v1/relays/1", json={"state": False},
                           headers=auth()) as resp:
        assert resp.status == 503
        assert await resp.json() == {"error": "board_unavailable"}
    relay = await _relay(session, service, 1)
    # The last acknowledged state is no longer known to hold: unknown, not "on".
    assert (relay["available"], relay["state"]) == (False, None)
    assert service.meter.snapshot()["boards"]["voltage"]["relays"] is None


async def test_settings_survive_a_restart(
    tmp_path: Path, ports: tuple[PtyPort, PtyPort], session: aiohttp.ClientSession
) -> None:
    data = tmp_path / "data"
    for attempt in range(2):
        service = AddonService(_options(*ports), data, host="127.0.0.1", port=0)
        await service.start()
        try:
            if attempt == 0:
                async with session.put(service.url + "/api/v1/relays/2",
                                       json={"priority": 10, "min_on_s": 600},
                                       headers=auth()) as resp:
                    assert resp.status == 200
                    assert (await resp.json())["priority"] == 10
            relay = await _relay(session, service, 2)
            assert (relay["priority"], relay["min_on_s"]) == (10, 600)
        finally:
            await service.stop()
    # Written atomically: no temporary file left next to it.
    assert [p.name for p in data.iterdir() if SETTINGS_FILE in p.name] == [SETTINGS_FILE]


@pytest.mark.parametrize(
    ("watchdog_s", "hello_lost"),
    [
        # 30 s: the keepalive (every 10 s) cannot be what re-arms it within the test.
        (30, False),
        # After a reset the ESP8266 ROM prints at 74880 baud: read at 115200 that is
        # garbage, and a hello glued to it is rejected. The keepalive itself re-arms.
        (3, True),
    ],
)
async def test_watchdog_is_rearmed_after_every_board_reboot(
    tmp_path: Path, ports: tuple[PtyPort, PtyPort], watchdog_s: int, hello_lost: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with _board_service(tmp_path, ports, relay_watchdog_s=watchdog_s) as (service, peer):
        rearm = ("WDT", (str(watchdog_s),))
        await peer.boot()
        command = await peer.command()
        assert (command.command, command.args) == rearm
        await peer.send("ETA", str(command.cmd_id), "OK", peer.relays)
        await wait_until(lambda: "Voltage board watchdog armed" in caplog.text)
        assert f"after {watchdog_s} s without the add-on" in caplog.text
        # The board reboots (its watchdog is 0 again) and says hello on its own.
        peer.seq = -1
        hello = frame("ETH", "0", "1.0.0", "3", "1.8")
        await peer.port.write(b"\xe0\x8frl\x12" + hello if hello_lost else hello)
        if hello_lost:
            await wait_until(
                lambda: service.meter.snapshot()["boards"]["voltage"]["lines_rejected"])
        command = await peer.command()
        assert (command.command, command.args) == rearm


async def test_a_watchdog_trip_and_relays_found_off_after_a_restart_are_said(
    tmp_path: Path, ports: tuple[PtyPort, PtyPort], caplog: pytest.LogCaptureFixture,
) -> None:
    """A frozen or killed add-on lets the board's watchdog open every relay (the freezer
    off): the add-on that woke or restarted said nothing, and nobody switched it back."""
    async with _board_service(tmp_path, ports, relay_watchdog_s=2) as (service, peer):
        await peer.boot()
        await wait_until(lambda: service.relays.available(service.relays.get(1)))
        assert "could not feed the voltage board's watchdog" not in caplog.text
        # Frozen for longer than the watchdog.
        asyncio.get_running_loop().call_soon(time.sleep, 2.8)
        await wait_until(lambda: "could not feed the voltage board's watchdog" in caplog.text)
        assert "longer than relay_watchdog_s (2 s): the board has put its relays in their " \
            "fail-safe states" in caplog.text
    with contextlib.suppress(TimeoutError):  # the first run's keepalives
        while True:
            await ports[1].read_frame_line(timeout=0.3)
    # Stopped while relays 1-3 were on; the board opened relays 1 and 3 meanwhile.
    async with _board_service(tmp_path, ports, relay_watchdog_s=2) as (service, peer):
        peer.relays = "010"
        await peer.boot()
        await wait_until(lambda: service.relays.available(service.relays.get(1)))
        said = [m for r in caplog.records if "is off now" in (m := r.getMessage())]
        assert [m.split(" was on")[0] for m in said] == [
            "Relay 1 (Water heater)", "Relay 3 (Laundry)"]


FREEZER_ON_RELAY_2 = tuple(replace(r, fail_safe_on=r.id == 2) for r in DEFAULT_RELAYS)


@pytest.mark.parametrize(("version", "hello_after", "relays", "sent"), [
    # Firmware 1.5.0 says its pattern: SAFE only to change it (each is a flash write).
    ("1.5.0", ("power_on", "000"), FREEZER_ON_RELAY_2, "010"),
    ("1.5.0", ("power_on", "010"), FREEZER_ON_RELAY_2, None),
    ("1.5.0", ("power_on", "110"), DEFAULT_RELAYS, "000"),
    ("1.5.0", ("power_on", "000"), DEFAULT_RELAYS, None),
    # Older firmware does not: sent at each hello while a relay should be on.
    ("1.4.0", ("power_on",), FREEZER_ON_RELAY_2, "010"),
    ("1.0.0", (), DEFAULT_RELAYS, None),
])
async def test_the_fail_safe_relays_are_stored_on_the_board(
    tmp_path: Path, ports: tuple[PtyPort, PtyPort], caplog: pytest.LogCaptureFixture,
    version: str, hello_after: tuple[str, ...], relays: tuple[RelayConfig, ...],
    sent: str | None,
) -> None:
    """A freezer on a board relay: the board's watchdog and its boot opened every relay,
    the freezer's too, and no option could say otherwise."""
    async with _board_service(tmp_path, ports, relays=relays) as (_service, peer):
        await peer.boot(*hello_after, version=version)
        if sent is None:
            with pytest.raises(TimeoutError):
                await peer.command(timeout=1.0)
            return
        command = await peer.acknowledge(peer.relays)
        assert (command.command, command.args) == ("SAFE", (sent,))
        said = "relays [2] on (closed), the others off" if "1" in sent else "every relay off"
        await wait_until(lambda: f"Voltage board fail-safe state stored: {said}" in caplog.text)
        # The board restarts, saying the stored pattern: nothing more to write.
        peer.seq = -1
        await peer.send("ETH", version, "3", "1.8", "power_on", sent)
        if version == "1.5.0":
            with pytest.raises(TimeoutError):
                await peer.command(timeout=1.0)


async def test_without_board_relays_the_board_is_disarmed_and_its_fail_safe_cleared(
    tmp_path: Path, ports: tuple[PtyPort, PtyPort],
) -> None:
    """The board relays taken out of the options: nothing sent the board its WDT or SAFE
    any more, so the watchdog an earlier run armed tripped and opened its relays, and its
    old fail-safe pattern stayed (helper 90)."""
    async with _board_service(tmp_path, ports, relays=(), relay_watchdog_s=30) as (_s, peer):
        await peer.boot("power_on", "110", version="1.5.0")
        watchdog = parse_command_line(await peer.port.read_frame_line(3.0))
        assert (watchdog.command, watchdog.args) == ("WDT", ("0",))  # not 30: no relay to keep
        await peer.send("ETA", str(watchdog.cmd_id), "OK", peer.relays)
        command = await peer.acknowledge(peer.relays)
        assert (command.command, command.args) == ("SAFE", ("000",))


async def test_a_fail_safe_state_the_board_cannot_store_is_said(
    tmp_path: Path, ports: tuple[PtyPort, PtyPort], caplog: pytest.LogCaptureFixture,
) -> None:
    async with _board_service(tmp_path, ports, relays=FREEZER_ON_RELAY_2) as (service, peer):
        await peer.boot("power_on", "000", version="1.5.0")
        command = await peer.command()
        await peer.send("ETA", str(command.cmd_id), "EFLASH", peer.relays)
        await wait_until(lambda: "could not store it in its flash" in caplog.text)
        assert "after its next restart its relays start in the old one" in caplog.text
        relay = service.relays.as_json(service.relays.get(2))
        assert relay["fail_safe_on"] is True


async def test_relays_beyond_the_boards_count_are_unavailable(
    tmp_path: Path, ports: tuple[PtyPort, PtyPort], session: aiohttp.ClientSession
) -> None:
    async with _board_service(tmp_path, ports) as (service, peer):
        peer.relays = "10"  # a board with two relays
        await peer.boot()
        await wait_until(lambda: service.relays.available(service.relays.get(1)))
        relays = (await _get(session, service, "/api/v1/relays"))["relays"]
        assert [(r["state"], r["available"]) for r in relays] == [
            (True, True), (False, True), (None, False),
        ]
        async with session.put(service.url + "/api/v1/relays/3", json={"state": True},
                               headers=auth()) as resp:
            assert resp.status == 503
        # The RPICT still works: relays do not get in the way of readings.
        await ports[0].write(rpict_line(100.0, 0.0, 0.0))
        await wait_until(lambda: service.meter.snapshot()["available"])


async def test_a_rebooted_boards_relays_are_unknown_until_it_reports_them(
    board: tuple[AddonService, BoardPeer], session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service, peer = board
    assert (await _relay(session, service, 1))["state"] is True
    # The hello the add-on asked for when it opened the port is no news.
    assert "restarted" not in caplog.text
    # The board rebooted (a brown-out): its relays are in their boot state, open until set.
    peer.seq = -1
    await peer.send("ETH", "1.0.0", "3", "1.8")
    await wait_until(lambda: not service.relays.available(service.relays.get(1)))
    assert (await _relay(session, service, 1))["state"] is None
    assert service.meter.snapshot()["boards"]["voltage"]["relays"] is None
    # Relays that moved without a command are said in the log, with why.
    assert "The voltage board restarted: its relays are in their boot" in caplog.text
    await peer.send("ETM", "230.0", "50.00", "000", "0")
    await wait_until(lambda: service.relays.available(service.relays.get(1)))
    relays = (await _get(session, service, "/api/v1/relays"))["relays"]
    assert [(r["state"], r["available"]) for r in relays] == [(False, True)] * 3


async def test_relays_dropped_by_a_replug_are_said(
    board: tuple[AddonService, BoardPeer], session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A USB board resets when plugged in again: its relays fell to their boot state and the
    only log line was "Voltage board sequence restarted" at INFO."""
    service, peer = board
    assert (await _relay(session, service, 1))["state"] is True
    await _replug(service, peer)
    peer.relays = "010"  # booted: relay 2's fail-safe state is closed, the others open
    await peer.boot()

    async def relay_1_off() -> bool:
        return (await _relay(session, service, 1))["state"] is False

    # The boot's frames are read in turn (on a loaded machine, after this test looks).
    await wait_until(relay_1_off, timeout=10, what="relay 1 in its boot state")

    def said_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if "port closed and off" in r.getMessage()]

    await wait_until(lambda: bool(said_lines()), timeout=10, what="the warning")
    said = said_lines()
    assert said == ["Voltage board relays on before its port closed and off since it opened "
                    "again: 1, 3. The board restarted (a USB board does when plugged in): its "
                    "relays are in their boot (fail-safe) state until switched again"]
    assert [r.levelname for r in caplog.records if "port closed and off" in r.getMessage()] \
        == ["WARNING"]


async def test_relays_are_unknown_after_a_replug_until_the_board_says(
    board: tuple[AddonService, BoardPeer], session: aiohttp.ClientSession,
) -> None:
    """The port open again but the board (reset by the replug) not yet heard: its relays
    showed available with their states from before the unplug, which the reset undid."""
    service, peer = board
    assert (await _relay(session, service, 1))["state"] is True
    await _replug(service, peer)
    relays = (await _get(session, service, "/api/v1/relays"))["relays"]
    assert [(r["state"], r["available"]) for r in relays] == [(None, False)] * 3
    state = await _get(session, service, "/api/v1/state")
    assert [(r["state"], r["available"]) for r in state["relays"]] == [(None, False)] * 3
    peer.relays = "010"
    await peer.boot()
    await wait_until(lambda: service.relays.available(service.relays.get(1)), timeout=10)
    relays = (await _get(session, service, "/api/v1/relays"))["relays"]
    assert [(r["state"], r["available"]) for r in relays] == [
        (False, True), (True, True), (False, True),
    ]


async def test_a_lost_hello_is_asked_again(
    tmp_path: Path, ports: tuple[PtyPort, PtyPort], session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hello asked for on connecting lost in line noise: the firmware version and boot
    cause stayed unknown in /info until the board's next reboot."""
    monkeypatch.setattr(service_module, "HELLO_ASK_INTERVAL_S", 0.2)
    async with _board_service(tmp_path, ports) as (service, peer):
        lost = parse_command_line(await ports[1].read_frame_line())
        assert lost.command == "HELLO"  # not answered: lost
        await asyncio.sleep(0.3)
        await peer.send("ETM", "230.0", "50.00", "111", "0")
        again = parse_command_line(await ports[1].read_frame_line(timeout=10))
        assert again.command == "HELLO"
        await peer.send("ETA", str(again.cmd_id), "OK", "111")
        await peer.send("ETH", "1.4.2", "3", "1.8", "power_on")
        await wait_until(lambda: service.meter.fw_version == "1.4.2")
        boards = (await _get(session, service, "/api/v1/info"))["boards"]
        assert [b.get("fw_version") for b in boards if b["id"] == "voltage"] == ["1.4.2"]


async def test_fewer_relays_than_the_hello_said_leave_the_others_unavailable(
    board: tuple[AddonService, BoardPeer], session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture
) -> None:
    # A board that rebooted with a smaller relay count and whose hello was lost.
    service, peer = board
    await peer.send("ETM", "230.0", "50.00", "10", "0")
    await wait_until(lambda: not service.relays.available(service.relays.get(3)))
    relays = (await _get(session, service, "/api/v1/relays"))["relays"]
    assert [(r["state"], r["available"]) for r in relays] == [
        (True, True), (False, True), (None, False),
    ]
    assert "now reports 2 relays instead of 3: relays [3] are unavailable" in caplog.text
    await peer.send("ETM", "230.0", "50.00", "101", "0")
    await wait_until(lambda: service.relays.available(service.relays.get(3)))
    assert "now reports 3 relays instead of 2\n" in caplog.text


async def _replug(service: AddonService, peer: BoardPeer) -> None:
    """Unplug the voltage board and plug it back in; until the port is open again."""
    peer.port.unplug()
    await wait_until(lambda: not service.meter.board_connected("voltage"))
    peer.port.plug()
    await wait_until(lambda: service.meter.board_connected("voltage"), timeout=15)


async def _relay(session: aiohttp.ClientSession, service: AddonService,
                 relay_id: int) -> dict[str, Any]:
    async with session.get(service.url + "/api/v1/relays", headers=auth()) as resp:
        relays: list[dict[str, Any]] = (await resp.json())["relays"]
    return next(r for r in relays if r["id"] == relay_id)


async def test_settings_that_cannot_be_saved_are_said_once(
    tmp_path: Path, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    (data / SETTINGS_FILE).mkdir(parents=True)  # in the way of every save
    (data / ".relay_settings.json.k1l2m3.tmp").write_text("{")  # left by a kill -9
    service = AddonService(Options(api_token=TOKEN), data, host="127.0.0.1", port=0)
    await service.start()
    try:
        assert not list(data.glob(".*.tmp")), "scratch files of a killed run are removed"
        before = await _relay(session, service, 2)
        for priority in (7, 8, 9):
            async with session.put(service.url + "/api/v1/relays/2",
                                   json={"priority": priority}, headers=auth()) as resp:
                # Not a 200 for a priority that would be gone after the next restart.
                assert resp.status == 500
                assert (await resp.json())["error"] == "storage_error"
        assert (await _relay(session, service, 2))["priority"] == before["priority"]
        assert caplog.text.count("Cannot save relay settings") == 1
        (data / SETTINGS_FILE).rmdir()
        async with session.put(service.url + "/api/v1/relays/2", json={"priority": 10},
                               headers=auth()) as resp:
            assert resp.status == 200
        assert "Relay settings saved again" in caplog.text
        assert json.loads((data / SETTINGS_FILE).read_text())["2"]["priority"] == 10
    finally:
        await service.stop()


async def test_board_relays_without_a_voltage_port_say_why_they_are_unavailable(
    tmp_path: Path, ports: tuple[PtyPort, PtyPort], session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The default options list three board relays; a home with only the RPICT hat got
    three dead switches and no word about them."""
    options = Options(api_token=TOKEN, rpict_port=str(ports[0].path))
    service = AddonService(options, tmp_path / "data", host="127.0.0.1", port=0)
    await service.start()
    try:
        relays = (await _get(session, service, "/api/v1/relays"))["relays"]
    finally:
        await service.stop()
    assert [(r["id"], r["available"]) for r in relays] == [(1, False), (2, False), (3, False)]
    assert ("Relays [1, 2, 3] are on the voltage board (source: board), but voltage_port "
            "is not set: they stay unavailable") in caplog.text



@pytest.mark.parametrize("saved", [None, False, True])
async def test_a_relay_found_on_at_start_counts_its_minimum_on_time_from_then(
    tmp_path: Path, saved: bool | None
) -> None:
    """Whatever the last run saved (nothing, off, on without a time): demand response must
    not cut a relay found on inside its minimum on time. A relay found as the last run left
    it keeps when it was switched; one found otherwise changed at an unknown time."""
    switched = 1_780_000_000.0
    if saved is not None:
        (tmp_path / SETTINGS_FILE).write_text(json.dumps({"1": {
            "priority": 50, "min_on_s": 600, "shed": False, "state": saved,
            "on_since": None, "last_changed": switched}}))
    manager = RelayManager([RelayConfig(1, "Heater", "board")], tmp_path)
    await manager.update_settings(1, priority=None, min_on_s=600)
    manager.report(1, True)
    relay = manager.get(1)
    try:
        assert manager.inside_min_on(relay)
        assert manager.as_json(relay)["last_changed"] == (
            "2026-05-28T20:26:40Z" if saved is True else None)
    finally:
        await manager.stop()


async def test_a_shed_relay_never_reports_a_negative_drop(
    board: tuple[AddonService, BoardPeer], ports: tuple[PtyPort, PtyPort],
    session: aiohttp.ClientSession,
) -> None:
    """The house drew more after the first relay went off (something else started): the
    shed said the water heater "dropped -200 W"; switching a load off frees at least 0 W."""
    service, peer = board
    rpict = ports[0]

    total = 3000.0

    async def meter() -> None:
        while True:  # a reading every 0.2 s, as the hat sends them
            await rpict.write(rpict_line(total, 0.0, 0.0))
            await asyncio.sleep(0.2)

    async def house() -> None:
        nonlocal total
        for total_after in (3200.0, 2500.0, 900.0):
            command = await peer.command()
            relay = int(command.args[0])
            peer.relays = peer.relays[:relay - 1] + "0" + peer.relays[relay:]
            total = total_after  # no reading after the acknowledgement shows the old total
            await peer.send("ETA", str(command.cmd_id), "OK", peer.relays)

    readings = asyncio.create_task(meter())
    answering = asyncio.create_task(house())
    try:
        await wait_until(lambda: service.meter.snapshot()["total_power_w"] is not None)
        async with session.post(service.url + "/api/v1/shed", json={"limit_w": 1000},
                                headers=auth()) as resp:
            assert resp.status == 200, await resp.text()
            report = await resp.json()
        await answering
    finally:
        readings.cancel()
    drops = [relay["drop_w"] for relay in report["shed"]]
    assert len(drops) == 3
    assert drops[0] == 0.0
    assert drops[1] == pytest.approx(drops[2] * 700 / 1600, rel=0.01)
    assert report["total_after_w"] < report["total_before_w"]


async def test_a_relay_is_not_switched_on_inside_its_minimum_off_time(
    board: tuple[AddonService, BoardPeer], session: aiohttp.ClientSession
) -> None:
    """A compressor (heat pump, air conditioner, fridge) switched off must rest before it
    starts again: an automation switching it back on sooner is refused, and the board is
    not even asked."""
    service, peer = board
    url = service.url + "/api/v1/relays/2"
    async with session.put(url, json={"min_off_s": 600}, headers=auth()) as resp:
        assert resp.status == 200
        assert (await resp.json())["min_off_s"] == 600

    answering = asyncio.create_task(peer.acknowledge("101"))
    async with session.put(url, json={"state": False}, headers=auth()) as resp:
        assert resp.status == 200
    await answering
    async with session.put(url, json={"state": True}, headers=auth()) as resp:
        assert resp.status == 409
        body = await resp.json()
        assert body["error"] == "min_off_time"
        assert 595 <= body["retry_after_s"] <= 600
        assert resp.headers["Retry-After"] == str(body["retry_after_s"])
    with pytest.raises(TimeoutError):
        await peer.command(timeout=0.5)
    assert (await _relay(session, service, 2))["state"] is False
    # The user may lower it (a resistive load after all): then it switches at once.
    async with session.put(url, json={"min_off_s": 0}, headers=auth()) as resp:
        assert resp.status == 200
    answering = asyncio.create_task(peer.acknowledge("111"))
    async with session.put(url, json={"state": True}, headers=auth()) as resp:
        assert resp.status == 200
        assert (await resp.json())["state"] is True
    assert (await answering).args == ("2", "1")


async def test_the_minimum_off_time_outlives_a_restart(tmp_path: Path) -> None:
    """Switched off 100 s before an add-on restart with 300 s to rest: 200 s left after it,
    not 300 s from the start nor none at all."""
    now = [1000.0]
    wall = [datetime(2026, 12, 7, 8, 0, tzinfo=UTC)]

    def manager() -> RelayManager:
        return RelayManager([RelayConfig(1, "Heat pump", "board")], tmp_path,
                            clock=lambda: now[0], wall_clock=lambda: wall[0])

    first = manager()
    first.report(1, True)
    await first.update_settings(1, min_off_s=300)
    first.report(1, False)
    now[0] += 100.0
    wall[0] += timedelta(seconds=100)
    assert first.min_off_left_s(first.get(1)) == 200
    await first.stop()
    now[0] = 5.0  # a new boot: the monotonic clock starts again
    second = manager()
    second.report(1, False)
    try:
        assert second.get(1).min_off_s == 300
        assert second.min_off_left_s(second.get(1)) == 200
    finally:
        await second.stop()


async def test_the_minimum_off_time_is_not_cut_short_by_rounding(tmp_path: Path) -> None:
    """Half a second of a heat pump's 300 s rest left is one second left, not none: the
    rest protects its compressor (helper 109)."""
    now = [1000.0]
    manager = RelayManager([RelayConfig(1, "Heat pump", "board")], tmp_path,
                           clock=lambda: now[0])
    manager.report(1, True)
    await manager.update_settings(1, min_off_s=300)
    manager.report(1, False)
    now[0] += 299.5
    try:
        assert manager.min_off_left_s(manager.get(1)) == 1
    finally:
        await manager.stop()


async def test_a_shed_switch_the_board_left_unanswered_is_restored(
    board: tuple[AddonService, BoardPeer], ports: tuple[PtyPort, PtyPort],
    session: aiohttp.ClientSession,
) -> None:
    """The board hung as the water heater was shed: the command went out unanswered
    (relay_timeout), the board carried it out when it woke, and no restore switched the
    heater back on: it was not marked shed (helper 77)."""
    service, peer = board
    await peer.acknowledge_watchdog()
    await ports[0].write(rpict_line(3000.0, 0.0, 0.0))
    await wait_until(lambda: service.meter.snapshot()["total_power_w"] is not None)
    async with session.post(service.url + "/api/v1/shed", json={"limit_w": 10},
                            headers=auth()) as resp:
        assert resp.status == 200, await resp.text()
        report = await resp.json()
    command = await peer.command()  # read, not answered in time
    assert (command.command, command.args) == ("RELAY", ("1", "0"))
    assert report["skipped"][0] == {"id": 1, "reason": "relay_timeout"}
    # The board wakes up and does it.
    peer.relays = "011"
    await peer.send("ETA", str(command.cmd_id), "OK", peer.relays)
    await wait_until(lambda: service.relays.available(service.relays.get(1)))
    relay = await _relay(session, service, 1)
    assert (relay["state"], relay["shed"]) == (False, True)
    answering = asyncio.create_task(peer.acknowledge("111"))
    async with session.post(service.url + "/api/v1/restore", json={"stagger_s": 0},
                            headers=auth()) as resp:
        assert resp.status == 200, await resp.text()
        restored = await resp.json()
    assert (await answering).args == ("1", "1")
    assert [r["id"] for r in restored["restored"]] == [1]


async def test_switches_queued_behind_an_unanswered_one_are_not_sent(
    board: tuple[AddonService, BoardPeer], session: aiohttp.ClientSession
) -> None:
    """An automation and the dashboard switch together while the board hangs: each queued
    switch was still sent and waited its own second, and the board ran them all on waking."""
    service, peer = board

    async def put(state: bool) -> int:
        async with session.put(service.url + "/api/v1/relays/1", json={"state": state},
                               headers=auth()) as resp:
            return resp.status

    statuses = asyncio.gather(put(False), put(True), put(False))
    assert (await peer.command()).command == "RELAY"  # read, never answered
    assert sorted(await statuses) == [503, 503, 504]
    with pytest.raises(TimeoutError):
        await peer.command(timeout=1.0)


async def _house(peer: BoardPeer) -> None:
    """The board carries out every relay command at once."""
    while True:
        command = await peer.command(timeout=60)
        relay, state = int(command.args[0]), command.args[1]
        peer.relays = peer.relays[:relay - 1] + state + peer.relays[relay:]
        await peer.send("ETA", str(command.cmd_id), "OK", peer.relays)


async def _readings(rpict: PtyPort) -> None:
    while True:  # a reading every 0.2 s, as the hat sends them
        await rpict.write(rpict_line(3000.0, 0.0, 0.0))
        await asyncio.sleep(0.2)


async def _post(session: aiohttp.ClientSession, service: AddonService, path: str,
                body: dict[str, Any]) -> Any:
    async with session.post(service.url + path, json=body, headers=auth()) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_a_shed_racing_a_hand_switch_off_leaves_the_relay_to_the_user(
    board: tuple[AddonService, BoardPeer], ports: tuple[PtyPort, PtyPort],
    session: aiohttp.ClientSession,
) -> None:
    """The user switched the water heater off as a shed picked it: the shed marked it
    shed, and the next restore switched it on against the user's wish."""
    service, peer = board
    readings = asyncio.create_task(_readings(ports[0]))
    try:
        await wait_until(lambda: service.meter.snapshot()["total_power_w"] is not None)
        by_hand = asyncio.create_task(session.put(
            service.url + "/api/v1/relays/1", json={"state": False}, headers=auth()))
        command = await peer.command()  # the user's, held while the shed comes
        shed = asyncio.create_task(_post(session, service, "/api/v1/shed", {"limit_w": 10}))
        await asyncio.sleep(0.5)  # the shed picked relay 1 (on) and waits for it
        peer.relays = "011"
        await peer.send("ETA", str(command.cmd_id), "OK", peer.relays)
        (await by_hand).close()
        house = asyncio.create_task(_house(peer))
        report = await shed
        assert {"id": 1, "reason": "off"} in report["skipped"]
        assert [r["id"] for r in report["shed"]] == [2, 3]
        restored = await _post(session, service, "/api/v1/restore", {"stagger_s": 0})
        house.cancel()
    finally:
        readings.cancel()
    assert [r["id"] for r in restored["restored"]] == [2, 3]
    relay = await _relay(session, service, 1)
    assert (relay["state"], relay["shed"]) == (False, False)


async def test_a_restore_asked_before_a_shed_does_not_undo_it(
    board: tuple[AddonService, BoardPeer], ports: tuple[PtyPort, PtyPort],
    session: aiohttp.ClientSession,
) -> None:
    """Restores run one after another: one waiting for an earlier one ran after a newer
    shed and switched back on everything that shed had just switched off."""
    service, peer = board
    readings = asyncio.create_task(_readings(ports[0]))
    house = asyncio.create_task(_house(peer))
    try:
        await wait_until(lambda: service.meter.snapshot()["total_power_w"] is not None)
        await _post(session, service, "/api/v1/shed", {"limit_w": 10})
        first = asyncio.create_task(
            _post(session, service, "/api/v1/restore", {"stagger_s": 3}))
        await wait_until(lambda: peer.relays == "100")  # relay 1 back, the stagger begins
        second = asyncio.create_task(
            _post(session, service, "/api/v1/restore", {"stagger_s": 0}))
        await asyncio.sleep(0.3)  # the second waits for the first
        await _post(session, service, "/api/v1/shed", {"limit_w": 10})
        assert (await first)["interrupted"] is True
        later = await second
    finally:
        house.cancel()
        readings.cancel()
    assert (later["restored"], later["interrupted"]) == ([], True)
    assert peer.relays == "000"


async def test_a_shed_cut_short_by_the_add_on_stopping_stays_shed(
    tmp_path: Path, ports: tuple[PtyPort, PtyPort], session: aiohttp.ClientSession,
) -> None:
    """An update stopped the add-on while a shed waited for the board's answer (the API
    cancels requests still running after its shutdown grace): the command had gone out and
    the board carried it out, but the relay was saved as not shed, and no restore switched
    it back on."""
    async with _board_service(tmp_path, ports) as (service, peer):
        await peer.boot()
        await wait_until(lambda: all(service.relays.available(r) for r in service.relays.relays))
        shedding = asyncio.create_task(service.relays.switch(1, False, shed=True))
        command = await peer.command()  # sent; its answer is what the cancel cuts short
        assert command.args == ("1", "0")
        shedding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await shedding
    saved = json.loads((tmp_path / "data" / SETTINGS_FILE).read_text())
    assert saved["1"]["shed"] is True
    # The board did it: after the restart the restore brings the water heater back.
    async with _board_service(tmp_path, ports) as (service, peer):
        peer.relays = "011"
        await peer.boot()
        await wait_until(lambda: all(service.relays.available(r) for r in service.relays.relays))
        house = asyncio.create_task(_house(peer))
        try:
            restored = await _post(session, service, "/api/v1/restore", {"stagger_s": 0})
        finally:
            house.cancel()
    assert [r["id"] for r in restored["restored"]] == [1]
