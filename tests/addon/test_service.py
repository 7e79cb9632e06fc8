"""The whole add-on service: real boards on ptys, the simulated meter, the real process."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from energy_tracker_addon.config import ChannelConfig, Options
from energy_tracker_addon.persistence import CounterStore
from energy_tracker_addon.protocol import frame, parse_command_line
from energy_tracker_addon.service import COUNTER_FILE, AddonService

from .polling import wait_until
from .ptys import PtyPort

pytestmark = pytest.mark.usefixtures("socket_enabled")

TOKEN = "service-test-token-0123456789abcdefghijklmnop"
ADDON_COMMAND = str(Path(sys.executable).with_name("energy-tracker-addon"))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def get(session: aiohttp.ClientSession, url: str, path: str, token: str = TOKEN) -> Any:
    async with session.get(f"{url}/api/v1/{path}",
                           headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200, path
        return await resp.json()


class Boards:
    """Both boards on ptys; `send()` writes one reading of each, like the real hardware."""

    def __init__(self, rpict: PtyPort, voltage: PtyPort) -> None:
        self.rpict = rpict
        self.voltage = voltage
        self._seq = 0

    async def send(self, printed_w: tuple[float, float, float], vrms: float) -> None:
        self._seq += 1
        etm = frame("ETM", str(self._seq), f"{vrms:.1f}", "50.00", "", "0")
        await self.voltage.write(etm)
        p1, p2, p3 = printed_w
        await self.rpict.write(f"11 {p1} {p2} {p3} 21.5\r\n".encode())


async def test_both_boards_over_ptys_survive_unplug_and_replug(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession
) -> None:
    boards = Boards(pty_port("ttyRPICT"), pty_port("ttyVOLT"))
    boards.rpict.plug()
    boards.voltage.plug()
    options = Options(api_token=TOKEN, rpict_port=str(boards.rpict.path), rpict_vest=230,
                      voltage_port=str(boards.voltage.path), stale_after_s=60)
    service = AddonService(options, tmp_path / "data", host="127.0.0.1", port=0)
    await service.start()
    try:
        state: dict[str, Any] = {}

        async def corrected_reading_arrives() -> bool:
            # The hat prints P = I x 230; the board measures 240 V, so real P is 240/230 P.
            await boards.send((230.0, 115.0, 0.0), vrms=240.0)
            state.update(await get(session, service.url, "state"))
            return bool(state["voltage_v"] == 240.0 and state["total_power_w"] == 240.0)

        await wait_until(corrected_reading_arrives, what="corrected reading")
        assert [c["power_w"] for c in state["channels"]] == [240.0, 120.0, 0.0]
        assert state["frequency_hz"] == 50.0
        assert state["boards"]["rpict"]["connected"] is True
        assert state["boards"]["voltage"]["connected"] is True
        # The host asks for the board's hello (its boot hello came before the port opened).
        hello = parse_command_line(await boards.voltage.read_frame_line())
        assert (hello.command, hello.args) == ("HELLO", ())
        await boards.voltage.write(frame("ETH", "0", "1.2.3", "0", "0.4512"))
        info: dict[str, Any] = {}

        async def firmware_known() -> bool:
            info.update(await get(session, service.url, "info"))
            return bool(info["boards"][1].get("fw_version") == "1.2.3")

        await wait_until(firmware_known, what="voltage board firmware in /info")
        assert [(b["id"], b["port"]) for b in info["boards"]] == [
            ("rpict", str(boards.rpict.path)), ("voltage", str(boards.voltage.path))
        ]

        boards.rpict.unplug()
        boards.voltage.unplug()

        async def values_unavailable() -> bool:
            unplugged.update(await get(session, service.url, "state"))
            return unplugged["available"] is False and unplugged["voltage_v"] is None

        # At once: a closed port sends nothing more, so the last values are not shown
        # for another stale_after_s (a minute here) as if they were current.
        unplugged: dict[str, Any] = {}
        await wait_until(values_unavailable, timeout=3, what="values null after unplugging")
        assert unplugged["total_power_w"] is None
        assert unplugged["frequency_hz"] is None
        assert {c["power_w"] for c in unplugged["channels"]} == {None}
        assert isinstance(unplugged["total_energy_kwh"], float)  # energy stays a number
        assert unplugged["boards"]["rpict"]["connected"] is False
        assert unplugged["boards"]["voltage"]["connected"] is False

        boards.rpict.plug()
        boards.voltage.plug()

        async def data_again() -> bool:
            await boards.send((460.0, 0.0, 0.0), vrms=230.0)
            replugged.update(await get(session, service.url, "state"))
            return bool(replugged["total_power_w"] == 460.0 and replugged["voltage_v"] == 230.0)

        replugged: dict[str, Any] = {}
        await wait_until(data_again, timeout=5, what="data after replugging")
        assert replugged["boards"]["rpict"]["connected"] is True
    finally:
        await service.stop()


async def test_empty_options_serve_the_simulated_meter(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    service = AddonService(Options(simulation_speed=60), tmp_path / "data",
                           host="127.0.0.1", port=0)
    await service.start()
    try:
        token = (tmp_path / "data" / "api_token").read_text().strip()
        assert token == service.token
        info = await get(session, service.url, "info", token)
        assert info["source"] == "simulated"
        assert [b["id"] for b in info["boards"]] == ["rpict", "voltage"]

        async def simulated_firmware_known() -> bool:
            boards = (await get(session, service.url, "info", token))["boards"]
            return bool(boards[1].get("fw_version", "").endswith("-sim"))

        await wait_until(simulated_firmware_known, what="simulated board firmware in /info")
        seen: set[float] = set()

        async def readings_change() -> bool:
            state = await get(session, service.url, "state", token)
            if state["available"]:
                assert state["voltage_v"] is not None
                seen.add(state["total_power_w"])
            return len(seen) >= 2

        # The simulated RPICT prints every 2 s; at 60x each line is a new minute of data.
        await wait_until(readings_change, timeout=10, what="two different total powers")
    finally:
        await service.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_process(data_dir: Path, port: int, *, as_s6: bool = False
                        ) -> asyncio.subprocess.Process:
    command = [ADDON_COMMAND, "--data-dir", str(data_dir), "--host", "127.0.0.1",
               "--port", str(port)]
    if as_s6:  # started as the s6 run script starts it: a backup's signals ignored first
        command = ["sh", "-c", "trap '' USR1 USR2; exec \"$@\"", "run", *command]
    return await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )


def ignores(pid: int, signum: int) -> bool:
    """Whether the process ignores the signal (its SigIgn mask in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


async def wait_healthy(session: aiohttp.ClientSession, url: str,
                       process: asyncio.subprocess.Process) -> None:
    async def healthy() -> bool:
        assert process.returncode is None, "the add-on exited"
        try:
            async with session.get(f"{url}/api/v1/health") as resp:
                return resp.status == 200
        except aiohttp.ClientConnectionError:
            return False

    await wait_until(healthy, timeout=20, what="the add-on answering health")


def shown_counters(state: dict[str, Any]) -> dict[str, float]:
    """Every counter a state shows that a consumer (Home Assistant's Energy dashboard)
    takes as never decreasing."""
    counters = {
        "total": state["total_energy_kwh"], "today": state["energy_today_kwh"],
        "co2 today": state["co2_kg_today"], "gas": state["gas_m3"],
    }
    counters |= {f"channel {c['id']}": c["energy_kwh"] for c in state["channels"]}
    counters |= {f"appliance {a['id']}": a["energy_kwh"] for a in state["appliances"] or []}
    return counters


async def test_what_the_addon_writes_only_it_can_read(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """The history (when people are home), the meter id, the token: 0600 files and 0700
    folders, not the 0644/0755 most were created with."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    # As 0.3.13 left them (meter id 0644, the meters/ folders 0755): private at the next start.
    (data_dir / "meter_id").write_text("0123456789abcdef0123456789abcdef\n")
    (data_dir / "meter_id").chmod(0o644)
    (data_dir / "meters" / "garage").mkdir(parents=True)
    (data_dir / "meters").chmod(0o755)
    (data_dir / "meters" / "garage").chmod(0o755)
    port = free_port()
    process = await start_process(data_dir, port)
    try:
        await wait_healthy(session, f"http://127.0.0.1:{port}", process)
        await wait_until(lambda: (data_dir / "history.sqlite3").exists()
                         and (data_dir / "energy_counters.json.live").exists(), timeout=20,
                         what="the history and the counters written")
    finally:
        process.terminate()
        await process.wait()
    written = sorted(data_dir.rglob("*"))
    assert {"history.sqlite3", "meter_id", "api_token", "garage"} <= {p.name for p in written}
    assert {p.relative_to(data_dir).as_posix(): oct(p.stat().st_mode & 0o777)
            for p in written if p.stat().st_mode & 0o077} == {}


async def test_a_killed_addon_resumes_from_every_counter_it_showed(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    # An hour's persist interval: the kill comes before the first durable save (the default
    # 30 s left that to the machine's speed), so only the live copies (statefile.LiveCopy)
    # can carry the counters over.
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "options.json").write_text(
        json.dumps({"simulation_speed": 60, "persist_interval_s": 3600}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    process = await start_process(data_dir, port)
    try:
        await wait_healthy(session, url, process)
        token = (data_dir / "api_token").read_text().strip()
        shown: dict[str, float] = {}

        async def counting() -> bool:
            shown.update(shown_counters(await get(session, url, "state", token)))
            return all(shown[key] > 0 for key in ("total", "today", "co2 today"))

        await wait_until(counting, timeout=20, what="energy counting")
        process.kill()
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert not (data_dir / COUNTER_FILE).exists()  # no durable save yet

    process = await start_process(data_dir, port)
    try:
        await wait_healthy(session, url, process)
        later = dict(shown)
        for _ in range(5):
            await asyncio.sleep(0.3)
            now = shown_counters(await get(session, url, "state", token))
            # Lower than shown before the kill, or than the read before: none.
            assert {k: (later[k], v) for k, v in now.items() if v < later.get(k, 0.0)} == {}
            later.update(now)
        assert now.keys() == shown.keys()

        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    # A clean stop saves everything counted, in the durable file.
    stored = CounterStore(data_dir / COUNTER_FILE).load()
    assert stored is not None
    assert round(stored.total_kwh, 6) >= later["total"]  # the API rounds to 6


async def test_the_simulated_meter_stands_in_for_any_hat_model(
    tmp_path: Path, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    # An rpict8 chosen before the hat is wired: the simulated meter prints RPICT3T1 lines,
    # which the rpict8 parser would reject one by one.
    options = Options(api_token=TOKEN, rpict_model="rpict8", simulation_speed=60, relays=(),
                      channels=(ChannelConfig(1, "Mains", "mains"),
                                ChannelConfig(8, "Heat pump", "circuit")))
    service = AddonService(options, tmp_path / "data", host="127.0.0.1", port=0)
    await service.start()
    try:
        state: dict[str, Any] = {}

        async def available() -> bool:
            state.update(await get(session, service.url, "state"))
            return bool(state["available"])

        # The first lines can take a while on a loaded machine (models loading beside).
        await wait_until(available, timeout=30, what="simulated readings")
        assert [c["id"] for c in state["channels"]] == [1]
        assert state["boards"]["rpict"]["lines_rejected"] == 0
    finally:
        await service.stop()
    assert "simulated meter is an rpict3t1, not an rpict8; channels Heat pump" in caplog.text


async def test_a_simulated_meter_with_a_real_voltage_board_is_said_plainly(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], caplog: pytest.LogCaptureFixture
) -> None:
    """rpict_port left empty beside a real voltage board: another household's powers,
    scaled by this home's voltage, switching its relays; only "source: simulated" at INFO
    said so."""
    board = pty_port("ttyVOLT")
    board.plug()
    options = Options(api_token=TOKEN, voltage_port=str(board.path), simulation_speed=60)
    service = AddonService(options, tmp_path / "data", host="127.0.0.1", port=0)
    await service.start()
    await service.stop()
    said = [r for r in caplog.records if "rpict_port is empty" in r.getMessage()]
    assert [r.levelname for r in said] == ["WARNING"]
    assert f"the real voltage board on {board.path}" in said[0].getMessage()
    assert "Set rpict_port to the hat's port" in said[0].getMessage()


@pytest.mark.parametrize(
    "command", [[ADDON_COMMAND], [sys.executable, "-m", "energy_tracker_addon"]]
)
async def test_bad_option_exits_2_naming_the_option(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "options.json").write_text(json.dumps({"rpict_vest": 9000}))
    process = await asyncio.create_subprocess_exec(
        *command, "--data-dir", str(tmp_path), "--host", "127.0.0.1", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(20):
        _stdout, stderr = await process.communicate()
    assert process.returncode == 2
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1
    assert "rpict_vest" in lines[0]
    assert "9000" in lines[0]
    assert not (tmp_path / "api_token").exists()  # nothing started


async def test_port_in_use_exits_1_with_one_line_saying_so(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            ADDON_COMMAND, "--data-dir", str(tmp_path), "--host", "127.0.0.1",
            "--port", str(port), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            _stdout, stderr = await process.communicate()
    assert process.returncode == 1
    errors = [line for line in stderr.decode().splitlines() if " ERROR " in line]
    assert len(errors) == 1, stderr.decode()
    assert "Cannot start:" in errors[0]
    assert "address already in use" in errors[0]
    assert "Traceback" not in stderr.decode()


async def test_warnings_about_the_options_are_log_lines_like_the_others(
    tmp_path: Path,
) -> None:
    """Said while reading the options, before logging was set up: a bare line with no time
    nor level in the add-on's log."""
    (tmp_path / "options.json").write_text(json.dumps({
        "channels": [{"id": 1, "name": "Mains", "role": "mains"}],
        "relays": [{"id": 1, "name": "Heat pump", "source": "board", "channel": 2}]}))
    with socket.socket() as busy:  # the start then fails at once, after the options
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        process = await asyncio.create_subprocess_exec(
            ADDON_COMMAND, "--data-dir", str(tmp_path), "--host", "127.0.0.1",
            "--port", str(busy.getsockname()[1]),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            _stdout, stderr = await process.communicate()
    warning = [line for line in stderr.decode().splitlines() if "names channel 2" in line]
    assert len(warning) == 1, stderr.decode()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+"
    assert re.match(stamp + r" WARNING energy_tracker_addon", warning[0]), warning[0]


async def test_port_in_use_fails_start_and_leaves_nothing_running(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        service = AddonService(Options(), tmp_path / "data", host="127.0.0.1", port=port)
        with pytest.raises(OSError, match="address already in use"):
            await service.start()
    # The simulator, links and meter were stopped again: verify_cleanup checks the tasks.


async def test_a_hot_backup_finds_the_history_merged_and_still(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """The Supervisor copies the data folder while the add-on runs: a WAL checkpoint in
    the middle of that copy damaged the history. Around the backup (backup_pre and
    backup_post, through s6: SIGUSR1 / SIGUSR2) the WAL is merged and writes wait."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "options.json").write_text(json.dumps({"simulation_speed": 60}))
    port = free_port()
    process = await start_process(data_dir, port, as_s6=True)
    database, wal = data_dir / "history.sqlite3", data_dir / "history.sqlite3-wal"
    held = data_dir / ".history_held"
    try:
        # A backup while it starts (once the run script's trap is set): it used to kill it.
        await wait_until(lambda: ignores(process.pid, signal.SIGUSR1), timeout=5,
                         what="the run script's trap")
        process.send_signal(signal.SIGUSR1)
        await wait_healthy(session, f"http://127.0.0.1:{port}", process)
        # A first flush of readings (every 10 s) into the WAL.
        await wait_until(lambda: wal.exists() and wal.stat().st_size > 0, timeout=20,
                         what="readings in the WAL")
        process.send_signal(signal.SIGUSR1)  # backup_pre
        await wait_until(held.exists, timeout=5, what="the history held")
        assert wal.stat().st_size == 0  # merged into the database file
        files = (database.stat().st_size, database.stat().st_mtime_ns, wal.stat().st_size)
        await asyncio.sleep(12)  # more than a flush interval, readings every 2 s
        assert (database.stat().st_size, database.stat().st_mtime_ns,
                wal.stat().st_size) == files
        process.send_signal(signal.SIGUSR2)  # backup_post
        await wait_until(lambda: wal.stat().st_size > 0, timeout=15,
                         what="the held readings written")
        assert not held.exists()
    finally:
        process.terminate()
        await process.wait()
