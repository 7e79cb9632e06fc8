"""Serial line → WebSocket message latency, and the add-on process's memory.

Starts `energy-tracker-addon` as a real process whose RPICT port is a pseudo-terminal held by
this script, connects one WebSocket client to /api/v1/stream, writes LINES readings to the
pty and times each one from `write()` to the arrival of the state message carrying it.
Also prints the process's VmRSS after start, after the run, and of a second process on the
default simulated meter.

    .venv/bin/python bench/bench_stream_latency.py [--lines 500] [--interval-ms 20]

Goal: p99 ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
import tty
from pathlib import Path

import aiohttp

ADDON = str(Path(sys.executable).with_name("energy-tracker-addon"))
TOKEN = "bench-token-0123456789abcdefghijklmnopqrstuvwxyz"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def start_addon(data_dir: Path, options: dict[str, object]) -> tuple[
    asyncio.subprocess.Process, str
]:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "options.json").write_text(json.dumps({"api_token": TOKEN, **options}))
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        ADDON, "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            if process.returncode is not None:
                raise RuntimeError(f"add-on exited with {process.returncode}")
            try:
                async with session.get(f"{url}/api/v1/health") as resp:
                    if resp.status == 200:
                        return process, url
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("add-on did not answer")


async def stop_addon(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(process.wait(), 10)


async def measure_latency(url: str, master: int, lines: int, interval_s: float) -> list[float]:
    sent_at: dict[float, float] = {}
    latencies: list[float] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(
        f"{url}/api/v1/stream", headers=HEADERS
    ) as ws:
        await ws.receive_json()  # the current state

        async def receive() -> None:
            while len(latencies) < lines:
                message = await ws.receive_json()
                arrived = time.perf_counter()
                data = message["data"]
                power = data["total_power_w"]
                if data["available"] and power in sent_at:
                    latencies.append(arrived - sent_at.pop(power))

        receiver = asyncio.create_task(receive())
        for i in range(lines):
            power = 1000.0 + i  # unique per line, to match messages to lines
            line = f"11 {power} 0.0 0.0 21.5\r\n".encode()
            sent_at[power] = time.perf_counter()
            os.write(master, line)
            await asyncio.sleep(interval_s)
        await asyncio.wait_for(receiver, 10)
    return latencies


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=500)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-addon-") as tmp:
        master, slave = os.openpty()
        tty.setraw(slave)
        try:
            process, url = await start_addon(
                Path(tmp) / "pty", {"rpict_port": os.ttyname(slave)}
            )
            try:
                await asyncio.sleep(1.0)  # let the link open the pty
                rss_start = rss_mib(process.pid)
                latencies = await measure_latency(url, master, args.lines,
                                                  args.interval_ms / 1000)
                rss_after = rss_mib(process.pid)
            finally:
                await stop_addon(process)
        finally:
            os.close(master)
            os.close(slave)

        process, _ = await start_addon(Path(tmp) / "sim", {})
        try:
            await asyncio.sleep(3.0)
            rss_simulated = rss_mib(process.pid)
        finally:
            await stop_addon(process)

    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    print(f"serial line -> WebSocket message, {len(ms)} lines every {args.interval_ms:g} ms:")
    print(f"  p50 {statistics.median(ms):.2f} ms   p99 {p99:.2f} ms   max {ms[-1]:.2f} ms"
          f"   (goal p99 <= 50 ms: {'met' if p99 <= 50 else 'NOT met'})")
    print("add-on process VmRSS:")
    print(f"  serial (pty) source after start   {rss_start:6.1f} MiB")
    print(f"  after {len(ms)} lines + 1 stream client {rss_after:6.1f} MiB")
    print(f"  simulated meter after 3 s          {rss_simulated:6.1f} MiB")


if __name__ == "__main__":
    asyncio.run(main())
