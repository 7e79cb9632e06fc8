"""What an unauthenticated client on the network costs the add-on: its API process on
aiohttp 3.11.16 (Home Assistant 2025.4's, which the image shipped to 0.3.13) against the
image's aiohttp now (.venv-addon), side by side, each a fresh add-on process on the
simulated meter.

Three attacks, none with a token (every answer is a 401):
* gzip bombs: concurrent POSTs of ~1 MB of gzip that inflates to 1 GB;
* pipelining: requests sent back to back on one connection without reading the answers;
* half-sent requests: connections that send part of a request header, then wait.

It prints the add-on's resident memory before, its peak (VmHWM) and what it keeps after
each, and how many half-sent connections the add-on still holds open after a while.

    .venv/bin/python bench/bench_api_abuse.py [--bombs 4] [--pipelined 200000]
        [--held 500] [--hold-s 25]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789abcdefghijklmnop"


def gzip_bomb(inflated_mb: int) -> bytes:
    """A gzip stream of `inflated_mb` MiB of zeros (about 1 MB per GB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1024 * 1024)
    parts = [compressor.compress(block) for _ in range(inflated_mb)]
    return b"".join(parts) + compressor.flush()


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_addon(python: Path, folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    data = folder / "data"
    data.mkdir(parents=True)
    (data / "options.json").write_text(json.dumps(
        {"api_token": TOKEN, "simulation_speed": 1.0, "nilm_enabled": False}))
    port = free_port()
    proc = subprocess.Popen(
        [str(python), "-m", "energy_tracker_addon", "--data-dir", str(data),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=(folder / "addon.log").open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1):
                break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        raise RuntimeError(f"the add-on did not start: {folder / 'addon.log'}")
    time.sleep(3)  # a few readings: the steady state
    return proc, port


async def post_bomb(port: int, bomb: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"POST /api/v1/shed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n"
            "Connection: close\r\n\r\n").encode()
    writer.write(head + bomb)
    try:
        await asyncio.wait_for(writer.drain(), timeout=60)
        answer = await asyncio.wait_for(reader.read(), timeout=120)
    except (ConnectionError, TimeoutError):
        answer = b""  # the add-on closed the connection before the whole bomb went out
    writer.close()
    return int(answer.split(b" ")[1]) if answer.startswith(b"HTTP/") else 0


async def pipeline(port: int, count: int) -> int:
    """Sends `count` requests back to back without reading an answer; how many went out
    before the add-on stopped reading them (30 s without progress)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = b"GET /api/v1/state HTTP/1.1\r\nHost: x\r\n\r\n"
    sent = 0
    try:
        for start in range(0, count, 1_000):
            batch = min(1_000, count - start)
            writer.write(request * batch)
            await asyncio.wait_for(writer.drain(), timeout=30)
            sent += batch
    except TimeoutError:
        pass
    await asyncio.sleep(5)  # the add-on parses and answers what it queued
    writer.transport.abort()
    del reader
    return sent


async def hold(port: int, count: int, seconds: float) -> int:
    """Half-sent requests; how many the add-on still holds open after `seconds`."""
    held = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/v1/state HTTP/1.1\r\nHost: x\r\n")
        held.append((reader, writer))
    await asyncio.sleep(seconds)
    still_open = sum(not reader.at_eof() for reader, _writer in held)
    for _reader, writer in held:
        writer.close()
    return still_open


def measure(python: Path, args: argparse.Namespace, bomb: bytes) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        proc, port = start_addon(python, Path(folder))
        try:
            version = subprocess.run(
                [str(python), "-c", "import aiohttp; print(aiohttp.__version__)"],
                capture_output=True, text=True, check=True).stdout.strip()
            figures: dict[str, Any] = {"aiohttp": version,
                                          "rss_start": status_kib(proc.pid, "VmRSS")}

            async def bombs() -> list[int]:
                return list(await asyncio.gather(
                    *(post_bomb(port, bomb) for _ in range(args.bombs))))

            figures["bomb_answers"] = sorted(set(asyncio.run(bombs())))
            time.sleep(2)
            figures["bomb_peak"] = status_kib(proc.pid, "VmHWM")
            figures["bomb_after"] = status_kib(proc.pid, "VmRSS")
            figures["pipelined_sent"] = asyncio.run(pipeline(port, args.pipelined))
            time.sleep(2)
            figures["pipeline_after"] = status_kib(proc.pid, "VmRSS")
            figures["held_open"] = asyncio.run(hold(port, args.held, args.hold_s))
            with urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=10) as answer:
                figures["health_after"] = answer.status
            return figures
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bombs", type=int, default=4)
    parser.add_argument("--bomb-mb", type=int, default=1024, help="inflated size (MiB)")
    parser.add_argument("--pipelined", type=int, default=200_000)
    parser.add_argument("--held", type=int, default=500)
    parser.add_argument("--hold-s", type=float, default=25.0,
                        help="longer than the add-on's API_IDLE_TIMEOUT_S (15 s)")
    args = parser.parse_args()
    bomb = gzip_bomb(args.bomb_mb)
    print(f"gzip bomb: {len(bomb) / 1e6:.2f} MB inflating to {args.bomb_mb} MiB; "
          f"{args.bombs} at once; {args.pipelined} pipelined GETs; {args.held} half-sent "
          f"requests held {args.hold_s:g} s (no token anywhere)")
    rows = {
        "HA's aiohttp (.venv, shipped to 0.3.13)": ROOT / ".venv/bin/python",
        "image pins (.venv-addon, 0.3.15)": ROOT / ".venv-addon/bin/python",
    }
    mib = 1024
    print("| add-on on | aiohttp | RSS start | bombs: answers, peak, kept | pipelining: "
          "requests taken, kept | half-sent still open | health after |")
    print("| --- | --- | ---: | --- | --- | ---: | ---: |")
    for label, python in rows.items():
        if not python.exists():
            print(f"| {label} | missing: run scripts/setup.sh | | | | | |")
            continue
        f = measure(python, args, bomb)
        print(f"| {label} | {f['aiohttp']} | {f['rss_start'] / mib:.0f} MiB "
              f"| {f['bomb_answers']}, {f['bomb_peak'] / mib:.0f} MiB, "
              f"{f['bomb_after'] / mib:.0f} MiB "
              f"| {f['pipelined_sent']}, {f['pipeline_after'] / mib:.0f} MiB "
              f"| {f['held_open']} of {args.held} | {f['health_after']} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
