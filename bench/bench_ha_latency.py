"""Serial line → Home Assistant state change latency, and recorder load.

Runs the real chain as the demo does: an RPICT line written to a pseudo-terminal is read by
the add-on service process, pushed over its WebSocket to the integration inside a real
`hass` process, and becomes a `state_changed` event that this script receives from HA's
WebSocket API. Prints p50/p99 (goal p99 ≤ 100 ms; measured with the integration's minimum
update interval at 0, every reading published) and how many states the recorder writes per
minute for the default entity set at the RPICT's real rate (one line every 2 s), with every
reading published and with the shipped 5 s minimum update interval, side by side.

    .venv/bin/python bench/bench_ha_latency.py [--lines 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sqlite3
import sys
import tempfile
import time
import tty
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import demo


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def open_pty(link: Path) -> int:
    """A raw pseudo-terminal whose slave is reachable at `link`; returns the master fd."""
    master, slave = os.openpty()
    tty.setraw(slave)
    link.symlink_to(os.ttyname(slave))
    return master


async def total_power_entity(ws: demo.HAWebSocket) -> str:
    while True:
        registry = await ws.call("config/entity_registry/list")
        for entry in registry:
            if entry["platform"] == "energy_tracker" and entry["unique_id"].endswith(
                "_total_power"
            ):
                return str(entry["entity_id"])
        await asyncio.sleep(1)


async def measure_latency(procs: demo.Processes, token: str, master: int,
                          lines: int) -> list[float]:
    async with aiohttp.ClientSession() as session, session.ws_connect(
        f"{procs.hass_url}/api/websocket"
    ) as raw:
        await raw.receive_json()
        await raw.send_json({"type": "auth", "access_token": token})
        await raw.receive_json()
        ws = demo.HAWebSocket(raw)
        entity_id = await total_power_entity(ws)
        await raw.send_json({"id": 9000, "type": "subscribe_events",
                             "event_type": "state_changed"})
        latencies: list[float] = []
        for i in range(lines + 10):
            power = 1000.0 + i  # every line a new value, so every line is a state change
            sent = time.perf_counter()
            os.write(master, f"11 {power:.1f} 100.0 50.0 20.5\r\n".encode())
            while True:
                msg: dict[str, Any] = await asyncio.wait_for(raw.receive_json(), 5)
                if msg.get("type") != "event":
                    continue
                data = msg["event"]["data"]
                if data["entity_id"] == entity_id and data["new_state"]["state"] == str(power):
                    break
            if i >= 10:  # warm-up
                latencies.append((time.perf_counter() - sent) * 1000)
            await asyncio.sleep(0.2)
        return latencies


async def set_update_interval(hass_url: str, token: str, seconds: int) -> None:
    """Save the entry's options with this minimum update interval (it reloads)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(f"{hass_url}/api/config/config_entries/entry") as resp:
            [entry] = [e for e in await resp.json() if e["domain"] == "energy_tracker"]
        async with session.post(f"{hass_url}/api/config/config_entries/options/flow",
                                json={"handler": entry["entry_id"]}) as resp:
            flow = await resp.json()
        data = {field["name"]: field["default"] for field in flow["data_schema"]
                if "default" in field}
        async with session.post(
            f"{hass_url}/api/config/config_entries/options/flow/{flow['flow_id']}",
            json=data | {"update_interval": seconds},
        ) as resp:
            result = await resp.json()
    if result.get("type") != "create_entry":
        raise RuntimeError(f"options flow did not finish: {result}")
    await asyncio.sleep(3)  # the reload


async def recorder_minute(master: int, db: Path) -> int:
    """States recorded while the hat prints a changing line every 2 s for a minute."""
    await asyncio.sleep(3)
    start = time.time()
    for i in range(30):
        os.write(master, f"11 {1500 + 37 * i:.1f} {200 + i:.1f} 80.0 21.0\r\n".encode())
        await asyncio.sleep(2)
    await asyncio.sleep(3)  # recorder commit interval is 1 s in the demo config
    return recorded_states(db, start)


def recorded_states(db: Path, since: float) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = con.execute(
            "SELECT COUNT(*) FROM states JOIN states_meta USING (metadata_id) "
            "WHERE last_updated_ts >= ? AND states_meta.entity_id LIKE '%energy_tracker%'",
            (since,),
        ).fetchone()
        return int(row[0])
    finally:
        con.close()


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        master = open_pty(workdir / "ttyRPICT")
        addon_port, hass_port = free_port(), free_port()
        options = {"rpict_port": str(workdir / "ttyRPICT")}
        with demo.running_demo(workdir, addon_port=addon_port, hass_port=hass_port,
                               addon_options=options) as procs:
            token = await demo.provision(procs, addon_port)
            await set_update_interval(procs.hass_url, token, 0)
            latencies = await measure_latency(procs, token, master, args.lines)
            p50, p99 = np.percentile(latencies, [50, 99])
            print(f"serial line -> HA state change: n={len(latencies)} "
                  f"p50={p50:.1f} ms p99={p99:.1f} ms (goal p99 <= 100 ms: "
                  f"{'met' if p99 <= 100 else 'MISSED'})")

            # Recorder load at the RPICT's real rate: one line every 2 s for a minute.
            db = workdir / "ha-config" / "home-assistant_v2.db"
            every = await recorder_minute(master, db)
            await set_update_interval(procs.hass_url, token, 5)
            shipped = await recorder_minute(master, db)
            print(f"recorder, states written in 60 s for the default entity set: "
                  f"{every} publishing every reading ({every / 30:.1f} per reading), "
                  f"{shipped} at the shipped 5 s minimum update interval "
                  f"({every / max(shipped, 1):.1f}x fewer)")
        os.close(master)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=300)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
