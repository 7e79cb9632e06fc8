"""Screenshot of Home Assistant's Energy dashboard fed by energy_tracker.

Starts the demo (add-on service on the simulated meter + real hass) in a scratch directory,
lets the meter run until Home Assistant has compiled hourly statistics (past the next full
hour, so this takes up to ~65 minutes), logs the headless Debian
`chromium` in through HA's own tokens (DevTools protocol, no extra packages) and saves a PNG.

    .venv/bin/python scripts/screenshot.py [--out docs/energy-dashboard.png]

Needs Debian's `chromium` package (`apt-get install chromium`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DevTools:
    """Just enough of the Chrome DevTools protocol: send a command, await its result."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        msg_id = self._next_id
        await self._ws.send_json({"id": msg_id, "method": method, "params": params})
        while True:
            msg = await self._ws.receive_json()
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result


async def wait_for_statistics(ws: demo.HAWebSocket, stat_ids: list[str], timeout: float) -> None:
    """Wait until the recorder has compiled an hourly statistic for every id.

    The Energy dashboard plots hourly statistics, which HA compiles just after each full
    hour: a fresh demo needs to run past the next hour boundary (up to ~65 minutes).
    """
    deadline = time.monotonic() + timeout
    start = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    while True:
        stats = await ws.call("recorder/statistics_during_period", start_time=start,
                              statistic_ids=stat_ids, period="hour", types=["sum"])
        if all(stats.get(stat_id) for stat_id in stat_ids):
            return
        if time.monotonic() > deadline:
            raise TimeoutError("no statistics compiled in time")
        await asyncio.sleep(10)


def find_chromium() -> str:
    """Checked before the hour's wait for statistics, not after it."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found: apt-get install chromium")
    return chromium


async def capture(chromium: str, hass_url: str, tokens: dict[str, Any], out: Path,
                  width: int, height: int) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as profile:
        browser = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            async with aiohttp.ClientSession() as session:
                await demo.wait_http(session, f"http://127.0.0.1:{port}/json/version", 30)
                async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                    page = next(t for t in await resp.json() if t["type"] == "page")
                async with session.ws_connect(page["webSocketDebuggerUrl"],
                                              max_msg_size=0) as ws:
                    cdp = DevTools(ws)
                    await cdp.call("Page.enable")
                    await cdp.call("Emulation.setDeviceMetricsOverride", width=width,
                                   height=height, deviceScaleFactor=1, mobile=False)
                    # The frontend keeps its tokens in localStorage under "hassTokens".
                    await cdp.call("Page.navigate", url=f"{hass_url}/auth/authorize")
                    await asyncio.sleep(2)
                    stored = json.dumps({**tokens, "hassUrl": hass_url,
                                         "clientId": demo.CLIENT_ID,
                                         "expires": int(time.time() * 1000)
                                         + tokens["expires_in"] * 1000})
                    await cdp.call("Runtime.evaluate", expression=(
                        f"localStorage.setItem('hassTokens', {json.dumps(stored)});"
                        "localStorage.setItem('selectedTheme', "
                        "JSON.stringify({theme: 'default', dark: false}));"))
                    await cdp.call("Page.navigate", url=f"{hass_url}/energy")
                    await asyncio.sleep(15)  # frontend boot + statistics fetch + charts
                    where = await cdp.call("Runtime.evaluate", expression="location.pathname")
                    if where["result"]["value"] != "/energy":
                        raise RuntimeError(f"not logged in: the page is {where['result']}")
                    shot = await cdp.call("Page.captureScreenshot", format="png")
                    out.write_bytes(base64.b64decode(shot["data"]))
        finally:
            browser.terminate()
            browser.wait(10)


async def run(args: argparse.Namespace) -> None:
    chromium = find_chromium()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        addon_port, hass_port = free_port(), free_port()
        with demo.running_demo(workdir, addon_port=addon_port, hass_port=hass_port,
                               addon_options={"simulation_speed": args.speed}) as procs:
            await demo.provision(procs, addon_port)
            async with aiohttp.ClientSession() as session:
                tokens = await demo.ha_tokens(session, procs.hass_url)
                async with demo.HAWebSocket.connect(session, procs.hass_url,
                                                    tokens["access_token"]) as ws:
                    total, channels = await demo.energy_sensor_ids(ws)
                    print("==> waiting for the recorder's first hourly statistics "
                          "(compiled just after the next full hour)")
                    await wait_for_statistics(ws, [total, *channels], timeout=4200)
                # Log in again: the first access token expired during the wait.
                tokens = await demo.ha_tokens(session, procs.hass_url)
            await capture(chromium, procs.hass_url, tokens, args.out, args.width,
                          args.height)
    print(f"==> wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "energy-dashboard.png")
    parser.add_argument("--speed", type=float, default=60.0)
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
