"""Relay command round trip: HTTP PUT → ET1 RELAY over a serial pty → board ack → response.

Starts `energy-tracker-addon` as a real process whose voltage board is the firmware's host
build (`et1_pty_board`, built here with CMake) on a pseudo-terminal bridged to the add-on's
port; without cmake/g++ a pty peer in this script (measurements each second, acks) stands
in (printed as such; tests/addon/test_benches.py runs it). Times
COMMANDS alternating on/off PUTs to /api/v1/relays/1 from send to response.

    .venv/bin/python bench/bench_relay_latency.py [--commands 200] [--peer auto|firmware|ack]

Goal: p99 well under the 1 s command timeout (the board itself answers within 200 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from energy_tracker_addon.protocol import frame, parse_command_line
from tests.addon.pty_bridge import PtyBridge
from tests.addon.ptys import PtyPort

ROOT = Path(__file__).resolve().parents[1]
ADDON = str(Path(sys.executable).with_name("energy-tracker-addon"))
TOKEN = "bench-token-0123456789abcdefghijklmnopqrstuvwxyz"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def build_firmware(build: Path) -> Path | None:
    if any(shutil.which(tool) is None for tool in ("cmake", "make", "c++")):
        return None
    env = {**os.environ, "MAKEFLAGS": "-j2"}
    for cmd in (["cmake", "-S", str(ROOT / "firmware"), "-B", str(build),
                 "-DCMAKE_BUILD_TYPE=Release"],
                ["cmake", "--build", str(build), "--target", "et1_pty_board"]):
        if subprocess.run(cmd, capture_output=True, env=env, check=False).returncode:
            return None
    return build / "et1_pty_board"


async def ack_peer(port: PtyPort) -> None:
    """A board that acks: every RELAY command is applied and answered at once, and a
    measurement goes out each second as from the firmware (the add-on asks a silent port's
    board for its hello only after a measurement: a hello sent before it opened the port
    is lost)."""
    relays, seq = ["0", "0", "0"], 0

    async def measure() -> None:
        nonlocal seq
        while True:
            seq += 1
            await port.write(frame("ETM", str(seq), "230.0", "50.00", "".join(relays), "0"))
            await asyncio.sleep(1)

    measuring = asyncio.create_task(measure())
    try:
        await port.write(frame("ETH", "0", "bench", "3", "1.0"))
        while True:
            command = parse_command_line(await port.read_frame_line(timeout=3600))
            if command.command == "RELAY":
                relays[int(command.args[0]) - 1] = command.args[1]
            seq += 1
            await port.write(frame("ETA", str(seq), str(command.cmd_id), "OK",
                                   "".join(relays)))
            if command.command == "HELLO":
                seq = 0
                await port.write(frame("ETH", str(seq), "bench", "3", "1.0"))
    finally:
        measuring.cancel()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run(commands: int, peer: str) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        program = build_firmware(tmp / "build") if peer in ("auto", "firmware") else None
        if peer == "firmware" and program is None:
            raise SystemExit("the firmware host build failed (needs cmake, make, c++)")
        rpict = PtyPort(tmp / "ttyRPICT")
        rpict.plug()
        board: subprocess.Popen[bytes] | None = None
        bridge: PtyBridge | None = None
        peer_task: asyncio.Task[None] | None = None
        if program is not None:
            bridge = PtyBridge(tmp / "ttyVOLT")
            bridge.start()
            board = subprocess.Popen([str(program), "--port", bridge.board_path],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            voltage_path, label = bridge.host_path, "firmware et1_pty_board (Release)"
        else:
            voltage = PtyPort(tmp / "ttyVOLT")
            voltage.plug()
            peer_task = asyncio.create_task(ack_peer(voltage))
            voltage_path, label = voltage.path, "pty peer that acks"
        data = tmp / "data"
        data.mkdir()
        (data / "options.json").write_text(json.dumps({
            "api_token": TOKEN, "rpict_port": str(rpict.path), "voltage_port": str(voltage_path),
            "log_level": "warning"}))
        port = free_port()
        addon = await asyncio.create_subprocess_exec(
            ADDON, "--data-dir", str(data), "--host", "127.0.0.1", "--port", str(port),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}/api/v1/relays/1"
        times: list[float] = []
        failures = 0
        try:
            async with aiohttp.ClientSession(headers=HEADERS) as session:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        async with session.get(url.rsplit("/", 1)[0]) as resp:
                            relays = (await resp.json())["relays"]
                            if relays[0]["available"]:
                                break
                    except (aiohttp.ClientError, KeyError):
                        pass
                    if time.monotonic() > deadline:
                        raise SystemExit("the add-on did not see the board within 30 s")
                    await asyncio.sleep(0.1)
                for i in range(commands):
                    started = time.perf_counter()
                    async with session.put(url, json={"state": i % 2 == 0}) as resp:
                        await resp.read()
                        ok = resp.status == 200
                    times.append((time.perf_counter() - started) * 1000)
                    failures += not ok
        finally:
            addon.terminate()
            await addon.wait()
            if board is not None:
                board.terminate()
                board.wait()
            if bridge is not None:
                bridge.close()
            if peer_task is not None:
                peer_task.cancel()
        times.sort()
        print(f"board: {label}")
        print(f"relay round trip over {commands} PUTs ({failures} failed): "
              f"p50 {statistics.median(times):.2f} ms, "
              f"p99 {times[min(len(times) - 1, round(0.99 * len(times)) - 1)]:.2f} ms, "
              f"max {times[-1]:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--peer", choices=("auto", "firmware", "ack"), default="auto")
    args = parser.parse_args()
    asyncio.run(run(args.commands, args.peer))


if __name__ == "__main__":
    main()
