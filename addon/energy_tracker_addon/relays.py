"""Appliance relays: acknowledged state, runtime settings, and switching (docs/api.md).

A relay's reported state is only ever what its backend reports back (the board's ETA/ETM,
a GPIO line read back), never what was asked for. Backends: `board_relays.BoardRelays` (the
ESP8266 board, real or simulated) and `gpio_relays.GpioRelays` (the Pi's GPIO).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TypeGuard

from .config import RelayConfig
from .statefile import WriteTrouble, write_atomic

_LOGGER = logging.getLogger(__name__)

SETTINGS_FILE: Final = "relay_settings.json"
DEFAULT_PRIORITY: Final = 50
DEFAULT_MIN_ON_S: Final = 0
DEFAULT_MIN_OFF_S: Final = 0
PRIORITY_MAX: Final = 100
MIN_ON_MAX_S: Final = 86_400
MIN_OFF_MAX_S: Final = 86_400

type ReportedSource = Literal["board", "gpio", "simulated"]
type Report = Callable[[int, bool], None]


class RelayError(Exception):
    """A relay command failed; `status` and `code` are its API answer."""

    status = 500
    code = "relay_error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.code)
        self.detail = detail


class RelayNotFound(RelayError):
    status, code = 404, "not_found"


class RelayUnavailable(RelayError):
    status, code = 503, "board_unavailable"


class RelayTimeout(RelayError):
    status, code = 504, "relay_timeout"


class RelayRejected(RelayError):
    status, code = 502, "relay_rejected"


class RelayTooSoon(RelayError):
    """Switched on inside its minimum off time (a compressor's restart delay)."""

    status, code = 409, "min_off_time"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"off less than its minimum off time: on again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class RelayChangedMeanwhile(RelayError):
    """Demand response's switch no longer applies: the relay was switched by hand while the
    switch waited its turn (already off for a shed; no longer shed for a restore)."""

    status, code = 409, "changed_meanwhile"


class RelayBackend(Protocol):
    """Where a group of relays lives; it reports acknowledged states through `report`."""

    def available(self, relay_id: int) -> bool: ...

    async def switch(self, relay_id: int, on: bool) -> None:
        """Switch and return once acknowledged (state reported); raise RelayError."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(slots=True)
class Relay:
    config: RelayConfig
    source: ReportedSource
    priority: int = DEFAULT_PRIORITY
    min_on_s: int = DEFAULT_MIN_ON_S
    min_off_s: int = DEFAULT_MIN_OFF_S
    state: bool | None = None
    last_changed: datetime | None = None
    # Monotonic time it came on (saved as wall time across restarts); None while off.
    on_since: float | None = None
    # The same for off; None while on.
    off_since: float | None = None
    shed: bool = False  # switched off by demand response, not restored since
    last_drop_w: float | None = None  # measured when demand response last shed it
    saved_state: bool | None = None  # as the last run left it (its last_changed holds for it)
    # +1 at every change of its state, shed mark or settings this run: a client showing a
    # command's answer knows a streamed relay with this at least as high is not older.
    revision: int = 0

    @property
    def id(self) -> int:
        return self.config.id

    @property
    def name(self) -> str:
        return self.config.name


class RelayManager:
    """All configured relays; switching goes through each relay's backend."""

    def __init__(
        self,
        configs: Sequence[RelayConfig],
        data_dir: Path,
        *,
        simulated_board: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._path = data_dir / SETTINGS_FILE
        self._clock = clock
        self._wall_clock = wall_clock
        self._relays: dict[int, Relay] = {}
        self.changes = 0  # acknowledged switches this run: tells readings taken before one
        # Called after a relay's state changed (set by the service: publish it at once).
        self.on_change: Callable[[], None] | None = None
        for config in configs:
            source: ReportedSource = config.source
            if config.source == "board" and simulated_board:
                source = "simulated"
            self._relays[config.id] = Relay(config, source)
        self._backends: dict[int, RelayBackend] = {}
        self._locks = {relay_id: asyncio.Lock() for relay_id in self._relays}
        self._save_lock = asyncio.Lock()
        self._save_tasks: set[asyncio.Task[None]] = set()
        self._saved: str | None = None
        self._save_trouble = WriteTrouble(  # tried again with every change
            _LOGGER, f"Cannot save relay settings to {str(self._path).replace('%', '%%')}: %s",
            "Relay settings saved again")
        self._load_settings()

    # ------------------------------------------------------------------ wiring

    def attach(self, relay_ids: Sequence[int], backend: RelayBackend) -> None:
        for relay_id in relay_ids:
            self._backends[relay_id] = backend

    def report(self, relay_id: int, state: bool) -> None:
        """An acknowledged state from a backend (ack, measurement frame, line read back)."""
        relay = self._relays.get(relay_id)
        if relay is None or relay.state == state:
            return
        if relay.state is not None:
            relay.last_changed = self._wall_clock()
            relay.on_since = self._clock() if state else None
            relay.off_since = None if state else self._clock()
            self.changes += 1
        else:  # the first state this run: compared with what the last run left
            if state != relay.saved_state:
                relay.last_changed = None  # changed while the add-on was down: when unknown
                if relay.saved_state:
                    _LOGGER.warning(
                        "Relay %d (%s) was on when the add-on last stopped and is off now: "
                        "switched while the add-on was away, or put in its fail-safe state "
                        "by the voltage board (its watchdog, relay_watchdog_s, or a reboot)",
                        relay.id, relay.name)
            # On or off since before the add-on knew (no saved time): the minimum time
            # counts from now, so a restart never lets demand response cut it short nor
            # a compressor start again too soon.
            if state:
                relay.off_since = None
                if relay.on_since is None:
                    relay.on_since = self._clock()
            else:
                relay.on_since = None
                if relay.off_since is None:
                    relay.off_since = self._clock()
        if state:
            relay.shed = False  # on again, by whatever means: nothing left to restore
        relay.state = state
        relay.revision += 1
        self._request_save()
        if self.on_change is not None:
            self.on_change()

    # ------------------------------------------------------------------ queries

    @property
    def relays(self) -> list[Relay]:
        return list(self._relays.values())

    def get(self, relay_id: int) -> Relay:
        try:
            return self._relays[relay_id]
        except KeyError:
            raise RelayNotFound from None

    def available(self, relay: Relay) -> bool:
        backend = self._backends.get(relay.id)
        return backend is not None and backend.available(relay.id)

    def inside_min_on(self, relay: Relay) -> bool:
        return relay.on_since is not None and self._clock() - relay.on_since < relay.min_on_s

    def min_off_left_s(self, relay: Relay) -> int:
        """Whole seconds until its minimum off time lets it on again; 0: it may."""
        if relay.off_since is None or relay.state is not False:
            return 0
        return max(0, math.ceil(relay.min_off_s - (self._clock() - relay.off_since)))

    def as_json(self, relay: Relay) -> dict[str, Any]:
        changed = relay.last_changed
        available = self.available(relay)
        return {
            "id": relay.id,
            "name": relay.name,
            "source": relay.source,
            # Unknown while the board that holds it cannot be asked (unplugged, rebooting).
            "state": relay.state if available else None,
            "available": available,
            "priority": relay.priority,
            "min_on_s": relay.min_on_s,
            "min_off_s": relay.min_off_s,
            "last_changed": (
                None if changed is None
                else changed.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            ),
            "shed": relay.shed,
            # The CT channel measuring what it switches (None: none), as the options link
            # it (a dangling link is dropped at start): its circuit's start and finish are
            # this relay's own when the relay caused them.
            "channel": relay.config.channel,
            "revision": relay.revision,
            # Closed by the board at its boot and when its watchdog trips (0.3.20+).
            "fail_safe_on": relay.config.fail_safe_on and relay.config.source == "board",
        }

    def all_json(self) -> list[dict[str, Any]]:
        return [self.as_json(relay) for relay in self._relays.values()]

    # ------------------------------------------------------------------ commands

    async def switch(self, relay_id: int, on: bool, *, shed: bool = False,
                     restore: bool = False) -> Relay:
        """Switch and wait for the acknowledgement; `shed` marks a demand-response switch
        off, `restore` switches on only a relay still shed (RelayChangedMeanwhile)."""
        relay = self.get(relay_id)
        backend = self._backends.get(relay_id)
        if backend is None or not backend.available(relay_id):
            raise RelayUnavailable
        async with self._locks[relay_id]:
            # Looked at again in turn: the command before this one may have found the
            # board silent, and what it has not read would all run when it wakes up.
            if not backend.available(relay_id):
                raise RelayUnavailable
            # Switched by hand while this waited: demand response leaves it as it is.
            if (shed and not on and relay.state is False) or (restore and not relay.shed):
                raise RelayChangedMeanwhile
            if on and (left := self.min_off_left_s(relay)):
                raise RelayTooSoon(left)
            before = relay.shed
            # Marked before the acknowledgement: the state published with the relay off
            # already says demand response did it (HA's event tells a shed from a finish).
            relay.shed = relay.shed or (shed and not on)
            try:
                await backend.switch(relay_id, on)
            except (RelayTimeout, asyncio.CancelledError):
                # Sent but not acknowledged (or the add-on stopping cancelled the wait):
                # the board may still do it, so a shed stays marked and a restore brings
                # the relay back.
                self._request_save()
                raise
            except BaseException:
                relay.shed = before
                raise
        # A manual switch takes the relay out of what `restore` would switch back on.
        relay.shed = shed and relay.state is False
        relay.revision += 1
        await self._save()
        return relay

    async def update_settings(
        self, relay_id: int, *, priority: int | None = None, min_on_s: int | None = None,
        min_off_s: int | None = None,
    ) -> Relay:
        """Raises OSError (nothing changed) when the settings cannot be saved: a priority
        that seemed set would be back to its old value after the next restart."""
        relay = self.get(relay_id)
        before = relay.priority, relay.min_on_s, relay.min_off_s
        if priority is not None:
            relay.priority = priority
        if min_on_s is not None:
            relay.min_on_s = min_on_s
        if min_off_s is not None:
            relay.min_off_s = min_off_s
        try:
            await self._save(raise_errors=True)
        except OSError:
            relay.priority, relay.min_on_s, relay.min_off_s = before
            raise
        relay.revision += 1
        return relay

    async def start(self) -> None:
        for backend in self._distinct_backends():
            await backend.start()

    async def stop(self) -> None:
        for backend in reversed(self._distinct_backends()):
            await backend.stop()
        await self._save()

    # ------------------------------------------------------------------ persistence

    def _request_save(self) -> None:
        """Save soon: called from frame handlers, which cannot wait for the disk."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller): saved with the next change or at stop
        task = loop.create_task(self._save())
        self._save_tasks.add(task)
        task.add_done_callback(self._save_tasks.discard)

    async def _save(self, *, raise_errors: bool = False) -> None:
        async with self._save_lock:
            text = json.dumps(self._settings(), indent=1)
            if text == self._saved:
                return
            try:
                await asyncio.to_thread(write_atomic, self._path, text)
            except OSError as error:
                self._save_trouble.failed(error)
                if raise_errors:
                    raise
                return
            self._save_trouble.succeeded()
            self._saved = text

    def _settings(self) -> dict[str, dict[str, Any]]:
        """What survives a restart: the user's settings, which relays demand response
        switched off, and since when each relay is on or off (wall time, as monotonic
        restarts)."""
        now_mono, now_wall = self._clock(), self._wall_clock().timestamp()
        return {
            str(r.id): {
                "priority": r.priority,
                "min_on_s": r.min_on_s,
                "min_off_s": r.min_off_s,
                "shed": r.shed,
                "state": r.state,
                "on_since": None if r.on_since is None
                else round(now_wall - (now_mono - r.on_since), 3),
                "off_since": None if r.off_since is None
                else round(now_wall - (now_mono - r.off_since), 3),
                "last_changed": None if r.last_changed is None
                else round(r.last_changed.timestamp(), 3),
            }
            for r in self._relays.values()
        }

    def _distinct_backends(self) -> list[RelayBackend]:
        return list({id(b): b for b in self._backends.values()}.values())

    def _load_settings(self) -> None:
        for relay_id, entry in _saved_entries(self._path, log=True).items():
            relay = self._relays.get(relay_id)
            if relay is None:
                continue  # a relay removed from the options since
            priority, min_on = entry.get("priority"), entry.get("min_on_s")
            if _in_range(priority, PRIORITY_MAX):
                relay.priority = priority
            if _in_range(min_on, MIN_ON_MAX_S):
                relay.min_on_s = min_on
            if _in_range(min_off := entry.get("min_off_s"), MIN_OFF_MAX_S):
                relay.min_off_s = min_off
            relay.shed = entry.get("shed") is True
            saved_state, changed = entry.get("state"), entry.get("last_changed")
            relay.saved_state = saved_state if isinstance(saved_state, bool) else None
            if isinstance(changed, int | float) and not isinstance(changed, bool) \
                    and relay.saved_state is not None and math.isfinite(changed):
                with contextlib.suppress(OverflowError, OSError, ValueError):
                    relay.last_changed = datetime.fromtimestamp(changed, UTC)
            on_since, off_since = entry.get("on_since"), entry.get("off_since")
            if relay.saved_state is True and _is_time(on_since):
                relay.on_since = self._monotonic(on_since)
            elif relay.saved_state is False and _is_time(off_since):
                relay.off_since = self._monotonic(off_since)

    def _monotonic(self, wall: float) -> float:
        """Saved wall time back to this run's monotonic clock; a time in the future (the
        clock was set back) counts as now."""
        return self._clock() - max(0.0, self._wall_clock().timestamp() - wall)


def _is_time(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


def _in_range(value: Any, high: int) -> TypeGuard[int]:
    return type(value) is int and 0 <= value <= high


def _saved_entries(path: Path, *, log: bool) -> dict[int, dict[str, Any]]:
    """The settings file's entry per relay id; `log`: say what is wrong with the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        if log:
            _LOGGER.error("Ignoring %s (%s): relay settings are the defaults", path, error)
        return {}
    if not isinstance(data, dict):
        if log:
            _LOGGER.error("Ignoring %s: not a JSON object", path)
        return {}
    return {int(key): entry for key, entry in data.items()
            if key.isdigit() and isinstance(entry, dict)}


def saved_states(data_dir: Path) -> dict[int, bool]:
    """The relays' last acknowledged states, for the simulated board: a real board keeps its
    relays while the add-on restarts, and the simulated one lives inside the add-on."""
    # RelayManager logs what is wrong with the file.
    entries = _saved_entries(data_dir / SETTINGS_FILE, log=False)
    return {relay_id: entry["state"] for relay_id, entry in entries.items()
            if isinstance(entry.get("state"), bool)}
