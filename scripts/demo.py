"""Run the demo: the add-on service on the simulated meter plus a real Home Assistant.

`./scripts/demo.sh` calls this after the venv exists. The same functions start the
processes for the end-to-end tests (tests/e2e/), so the demo and the tests cannot drift.

Home Assistant is provisioned only through its own public APIs (onboarding, auth, config
flow, energy websocket commands), never by writing its private `.storage` files.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
# The add-on runs on the image's pins (scripts/setup.sh), Home Assistant on its own.
ADDON_BIN = ROOT / ".venv-addon" / "bin"

DEMO_USER = "demo"
DEMO_PASSWORD = "energy-demo"  # documented in README.md
CLIENT_ID = "http://127.0.0.1:8123/"
CHANNEL_ENERGY = re.compile(r"_channel_(\d+)_energy$")  # a channel energy sensor's unique id

HA_CONFIGURATION = """\
# Written by scripts/demo.py: only what the demo needs, no default_config.
homeassistant:
  name: Energy Tracker demo
  unit_system: metric
  time_zone: {time_zone}
  currency: EUR
  country: FR
  latitude: 48.78
  longitude: 2.29
  elevation: 60

http:
  server_host: {host}
  server_port: {port}

frontend:
config:
energy:
history:
logbook:
recorder:
  db_url: sqlite:///{config_dir}/home-assistant_v2.db
  commit_interval: 1
conversation:
# What the automation editor saves (and the energy_tracker blueprints create) goes here:
# without it the editor said "saved" and no automation appeared.
automation: !include automations.yaml
logger:
  default: warning
  logs:
    custom_components.energy_tracker: debug
"""


@dataclass
class Processes:
    """The two processes of a running demo and how to reach them."""

    addon: subprocess.Popen[bytes]
    hass: subprocess.Popen[bytes]
    addon_url: str
    addon_token: str
    hass_url: str


def write_addon_options(data_dir: Path, options: dict[str, Any]) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "options.json").write_text(json.dumps(options, indent=2))


def write_ha_config(config_dir: Path, host: str, port: int) -> None:
    """Write configuration.yaml and link our integration into custom_components/."""
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "configuration.yaml").write_text(
        HA_CONFIGURATION.format(
            host=host, port=port, config_dir=config_dir, time_zone=local_time_zone()
        )
    )
    automations = config_dir / "automations.yaml"
    if not automations.exists():  # a demo started again keeps the user's automations
        automations.write_text("[]\n")
    custom = config_dir / "custom_components"
    custom.mkdir(exist_ok=True)
    link = custom / "energy_tracker"
    if not link.is_symlink():
        if link.exists():
            shutil.rmtree(link)
        link.symlink_to(ROOT / "custom_components" / "energy_tracker")


def local_time_zone() -> str:
    with contextlib.suppress(OSError):
        return Path("/etc/timezone").read_text().strip() or "UTC"
    return os.environ.get("TZ", "UTC") or "UTC"


def start_addon(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(ADDON_BIN / "energy-tracker-addon"), "--data-dir", str(data_dir),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        # As the Supervisor does: the add-on in Home Assistant's time zone.
        env={**os.environ, "TZ": local_time_zone()},
    )


def start_hass(config_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(VENV_BIN / "hass"), "-c", str(config_dir), "--skip-pip"],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )


async def wait_http(session: aiohttp.ClientSession, url: str, timeout: float,
                    proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until `url` answers anything below 500 (the server is up)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} while waiting for {url}")
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=3)) as resp:
                if resp.status < 500:
                    return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")
        await asyncio.sleep(0.5)


async def ha_token(session: aiohttp.ClientSession, hass_url: str) -> str:
    """Onboard Home Assistant (first run) or log in as the demo user; return an access token."""
    token: str = (await ha_tokens(session, hass_url))["access_token"]
    return token


async def onboarding_state(session: aiohttp.ClientSession, hass_url: str,
                           timeout: float = 180) -> tuple[dict[str, bool], str | None]:
    """HA's onboarding steps, or (nothing left, a login code) for an HA onboarded earlier.

    Once every step is done HA no longer serves /api/onboarding (404), which is also what
    it answers before the onboarding component has loaded: an onboarded HA is told apart
    by letting the demo user log in.
    """
    deadline = time.monotonic() + timeout
    while True:
        async with session.get(f"{hass_url}/api/onboarding") as resp:
            if resp.status == 200:
                return {step["step"]: step["done"] for step in await resp.json()}, None
        with contextlib.suppress(aiohttp.ClientError, RuntimeError, KeyError, ValueError):
            return {}, await login_code(session, hass_url)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{hass_url}: neither onboarding nor the demo login within "
                               f"{timeout:.0f} s")
        await asyncio.sleep(0.5)


async def ha_tokens(session: aiohttp.ClientSession, hass_url: str) -> dict[str, Any]:
    """Onboard Home Assistant (first run) or log in as the demo user; return HA's tokens."""
    steps, auth_code = await onboarding_state(session, hass_url)
    onboarded = auth_code is not None
    if auth_code is None and not steps.get("user"):
        async with session.post(
            f"{hass_url}/api/onboarding/users",
            json={"client_id": CLIENT_ID, "name": "Demo", "username": DEMO_USER,
                  "password": DEMO_PASSWORD, "language": "en"},
        ) as resp:
            resp.raise_for_status()
            auth_code = (await resp.json())["auth_code"]
    elif auth_code is None:
        auth_code = await login_code(session, hass_url)
    async with session.post(
        f"{hass_url}/auth/token",
        data={"grant_type": "authorization_code", "code": auth_code, "client_id": CLIENT_ID},
    ) as resp:
        resp.raise_for_status()
        tokens: dict[str, Any] = await resp.json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    for step, body in (
        ("core_config", {}),
        ("analytics", {}),
        ("integration", {"client_id": CLIENT_ID, "redirect_uri": f"{CLIENT_ID}?auth_callback=1"}),
    ):
        if not onboarded and not steps.get(step):
            async with session.post(f"{hass_url}/api/onboarding/{step}", json=body,
                                    headers=headers) as resp:
                if resp.status not in (200, 403):  # 403: already done
                    raise RuntimeError(f"onboarding {step}: {resp.status} {await resp.text()}")
    await remove_onboarding_defaults(session, hass_url, headers)
    return tokens


# Onboarding adds these (weather, radio, cloud TTS); they would reach the internet, and the
# demo promises no traffic beyond the local add-on API.
ONBOARDING_DEFAULT_DOMAINS = frozenset(
    {"met", "radio_browser", "google_translate", "shopping_list"}
)


async def remove_onboarding_defaults(session: aiohttp.ClientSession, hass_url: str,
                                     headers: dict[str, str]) -> None:
    async with session.get(f"{hass_url}/api/config/config_entries/entry",
                           headers=headers) as resp:
        entries = await resp.json()
    for entry in entries:
        if entry["domain"] in ONBOARDING_DEFAULT_DOMAINS:
            async with session.delete(
                f"{hass_url}/api/config/config_entries/entry/{entry['entry_id']}", headers=headers
            ) as resp:
                resp.raise_for_status()


async def login_code(session: aiohttp.ClientSession, hass_url: str) -> str:
    """Log in with the demo user's password through HA's login flow."""
    async with session.post(
        f"{hass_url}/auth/login_flow",
        json={"client_id": CLIENT_ID, "handler": ["homeassistant", None],
              "redirect_uri": f"{CLIENT_ID}?auth_callback=1"},
    ) as resp:
        flow = await resp.json()
    async with session.post(
        f"{hass_url}/auth/login_flow/{flow['flow_id']}",
        json={"client_id": CLIENT_ID, "username": DEMO_USER, "password": DEMO_PASSWORD},
    ) as resp:
        result = await resp.json()
    if result.get("type") != "create_entry":
        raise RuntimeError(f"demo login failed: {result}")
    code: str = result["result"]
    return code


async def configure_integration(session: aiohttp.ClientSession, hass_url: str, token: str,
                                addon_host: str, addon_port: int, addon_token: str) -> None:
    """Add the energy_tracker config entry through the user config flow (once)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with session.get(f"{hass_url}/api/config/config_entries/entry",
                           headers=headers) as resp:
        entries = await resp.json()
    if any(entry["domain"] == "energy_tracker" for entry in entries):
        return
    async with session.post(
        f"{hass_url}/api/config/config_entries/flow", headers=headers,
        json={"handler": "energy_tracker", "show_advanced_options": False},
    ) as resp:
        flow = await resp.json()
    async with session.post(
        f"{hass_url}/api/config/config_entries/flow/{flow['flow_id']}", headers=headers,
        json={"host": addon_host, "port": addon_port, "api_token": addon_token},
    ) as resp:
        result = await resp.json()
    if result.get("type") != "create_entry":
        raise RuntimeError(f"energy_tracker config flow did not finish: {result}")


class HAWebSocket:
    """Minimal client for HA's websocket API (used for energy prefs and registries)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._next_id = 1

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, session: aiohttp.ClientSession, hass_url: str,
                      token: str) -> Any:
        async with session.ws_connect(f"{hass_url}/api/websocket") as ws:
            await ws.receive_json()  # auth_required
            await ws.send_json({"type": "auth", "access_token": token})
            reply = await ws.receive_json()
            if reply["type"] != "auth_ok":
                raise RuntimeError(f"HA websocket auth failed: {reply}")
            yield cls(ws)

    async def call(self, msg_type: str, **payload: Any) -> Any:
        msg_id = self._next_id
        self._next_id += 1
        await self._ws.send_json({"id": msg_id, "type": msg_type, **payload})
        while True:
            reply = await self._ws.receive_json()
            if reply.get("id") == msg_id and reply["type"] == "result":
                if not reply["success"]:
                    raise RuntimeError(f"{msg_type}: {reply['error']}")
                return reply["result"]


async def energy_sensor_ids(ws: HAWebSocket, wait: float = 60) -> tuple[str, list[str]]:
    """The integration's total-energy sensor and its per-channel energy sensors."""
    total, channels, _gas = await energy_dashboard_ids(ws, wait)
    return total, channels


async def energy_dashboard_ids(ws: HAWebSocket, wait: float = 60,
                               channel_ids: set[int] | None = None
                               ) -> tuple[str, list[str], str | None]:
    """Total energy (grid), per-channel energy (of `channel_ids`, default all) and gas."""
    deadline = time.monotonic() + wait
    while True:
        registry = await ws.call("config/entity_registry/list")
        ours = [e for e in registry if e["platform"] == "energy_tracker"
                and e["entity_id"].startswith("sensor.")]
        total = [e["entity_id"] for e in ours if e["unique_id"].endswith("_total_energy")]
        channels = sorted(e["entity_id"] for e in ours
                          if (match := CHANNEL_ENERGY.search(e["unique_id"]))
                          and (channel_ids is None or int(match[1]) in channel_ids))
        gas = [e["entity_id"] for e in ours if e["unique_id"].endswith("_gas")]
        if total:
            return total[0], channels, (gas[0] if gas else None)
        if time.monotonic() > deadline:
            raise TimeoutError("energy_tracker energy sensors did not appear")
        await asyncio.sleep(1)


async def circuit_channel_ids(session: aiohttp.ClientSession, addon_url: str,
                              token: str) -> set[int]:
    """The add-on's channels whose role is "circuit" (a mains channel is the grid)."""
    async with session.get(f"{addon_url}/api/v1/info",
                           headers={"Authorization": f"Bearer {token}"}) as response:
        response.raise_for_status()
        info = await response.json()
    return {c["id"] for c in info["channels"] if c["role"] == "circuit"}


async def configure_energy_dashboard(ws: HAWebSocket, circuits: set[int]) -> None:
    """Point the Energy dashboard at our total (grid), the circuits' energy (devices: a
    mains channel's would count the house twice, docs/integration.md) and gas."""
    total, channels, gas = await energy_dashboard_ids(ws, channel_ids=circuits)
    price = {"stat_cost": None, "entity_energy_price": None, "number_energy_price": None}
    # Home Assistant 2026.4 replaced the grid's flow_from/flow_to lists with one source per
    # grid connection, and its websocket takes only the new shape (older ones only the old).
    legacy_grid = {"type": "grid", "flow_from": [{"stat_energy_from": total} | price],
                   "flow_to": [], "cost_adjustment_day": 0}
    grid = {"type": "grid", "stat_energy_from": total, "stat_energy_to": None} | price | {
        "cost_adjustment_day": 0}
    others: list[dict[str, Any]] = []
    if gas is not None:
        others.append({"type": "gas", "stat_energy_from": gas} | price)
    devices = [{"stat_consumption": entity} for entity in channels]
    try:
        await ws.call("energy/save_prefs", energy_sources=[legacy_grid, *others],
                      device_consumption=devices)
    except RuntimeError as error:
        if "invalid_format" not in str(error):
            raise
        await ws.call("energy/save_prefs", energy_sources=[grid, *others],
                      device_consumption=devices)


def grid_energy_statistic(grid: dict[str, Any]) -> str:
    """The grid source's consumption statistic, in either shape of energy/get_prefs."""
    if "flow_from" in grid:
        return str(grid["flow_from"][0]["stat_energy_from"])
    return str(grid["stat_energy_from"])


async def keep_http_config(ws: HAWebSocket) -> None:
    """Home Assistant 2026.8 on takes the http: YAML for a trial, and without a promotion
    goes back to port 8123 on every interface and restarts five minutes later. Older ones
    have no such command, and one whose config is stable has nothing to promote."""
    try:
        await ws.call("http/config/promote")
    except RuntimeError as error:
        if "unknown_command" not in str(error) and "not_allowed" not in str(error):
            raise


def read_addon_token(data_dir: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    path = data_dir / "api_token"
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the add-on did not write {path}")
        time.sleep(0.2)
    return path.read_text().strip()


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM, wait, then SIGKILL: both services shut down cleanly on SIGTERM."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running_demo(workdir: Path, *, addon_port: int, hass_port: int,
                 addon_options: dict[str, Any] | None = None) -> Iterator[Processes]:
    """Start the add-on service and hass in `workdir`; stop both on exit."""
    data_dir = workdir / "addon-data"
    config_dir = workdir / "ha-config"
    if addon_options is not None or not (data_dir / "options.json").exists():
        write_addon_options(data_dir, addon_options or {})
    write_ha_config(config_dir, "127.0.0.1", hass_port)
    addon = start_addon(data_dir, addon_port, workdir / "addon.log")
    procs: Processes | None = None
    try:
        token = read_addon_token(data_dir)
        hass = start_hass(config_dir, workdir / "hass.log")
        procs = Processes(addon, hass, f"http://127.0.0.1:{addon_port}", token,
                          f"http://127.0.0.1:{hass_port}")
        yield procs
    finally:
        # A caller may have replaced a process (an add-on restart): stop the current ones.
        if procs is not None:
            stop(procs.hass)
            stop(procs.addon)
        stop(addon)


async def provision(procs: Processes, addon_port: int) -> str:
    """Wait for both services, then onboard HA, add the integration, set up Energy."""
    async with aiohttp.ClientSession() as session:
        await wait_http(session, f"{procs.addon_url}/api/v1/health", 60, procs.addon)
        await wait_http(session, f"{procs.hass_url}/api/onboarding", 180, procs.hass)
        token = await ha_token(session, procs.hass_url)
        await configure_integration(session, procs.hass_url, token, "127.0.0.1", addon_port,
                                    procs.addon_token)
        circuits = await circuit_channel_ids(session, procs.addon_url, procs.addon_token)
        async with HAWebSocket.connect(session, procs.hass_url, token) as ws:
            await keep_http_config(ws)
            await configure_energy_dashboard(ws, circuits)
    return token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=ROOT / ".demo")
    parser.add_argument("--addon-port", type=int, default=8099)
    parser.add_argument("--hass-port", type=int, default=8123)
    parser.add_argument("--speed", type=float, default=1.0,
                        help="replay speed of the simulated meter (1 = real time)")
    args = parser.parse_args()
    for port, flag in ((args.addon_port, "--addon-port"), (args.hass_port, "--hass-port")):
        # Taken, Home Assistant logged it and went on, and the demo waited 3 minutes on
        # whatever answered there, then failed without naming the port.
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is free
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as error:
                sys.exit(f"error: port {port} is in use ({error.strerror}): another demo or "
                         f"Home Assistant? Stop it, or pass {flag} N")
    args.workdir.mkdir(parents=True, exist_ok=True)
    options = {"simulation_speed": args.speed}
    stop_event = asyncio.Event()

    def interrupted(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # The children run in their own sessions: a closed terminal (SIGHUP) or a kill
    # (SIGTERM) before the loop runs must still stop them, as Ctrl-C does.
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, interrupted)

    with running_demo(args.workdir, addon_port=args.addon_port, hass_port=args.hass_port,
                      addon_options=options) as procs:
        async def run() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, stop_event.set)
            print(f"==> waiting for Home Assistant (logs: {args.workdir}/hass.log)")
            provisioning = asyncio.create_task(provision(procs, args.addon_port))
            stopped = asyncio.create_task(stop_event.wait())
            # Ctrl-C while Home Assistant starts stops at once, not after provisioning.
            await asyncio.wait({provisioning, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not provisioning.done():
                provisioning.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await provisioning
                return
            stopped.cancel()
            provisioning.result()  # its error, if any
            print(
                "\n"
                f"  Home Assistant : {procs.hass_url}   user '{DEMO_USER}', "
                f"password '{DEMO_PASSWORD}'\n"
                f"  Add-on API     : {procs.addon_url}/api/v1/state   "
                f"(Authorization: Bearer {procs.addon_token})\n"
                "  Energy dashboard: "
                f"{procs.hass_url}/energy\n\n"
                "  Ctrl-C stops both.\n",
                flush=True,
            )
            stopper = asyncio.create_task(stop_event.wait())
            while not stop_event.is_set():
                if procs.addon.poll() is not None or procs.hass.poll() is not None:
                    print("a demo process exited; stopping", file=sys.stderr)
                    break
                await asyncio.wait({stopper}, timeout=1)
            stopper.cancel()

        asyncio.run(run())
    print("==> stopped")


if __name__ == "__main__":
    main()
