"""Demand response: shed relays until the measured total is under a limit, and restore them.

Every decision is taken on measured readings: after each switch the next RPICT reading
shows what the switch really removed, so shedding stops as soon as it is enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from .meter import Meter
from .relays import Relay, RelayChangedMeanwhile, RelayError, RelayManager

DEFAULT_STAGGER_S: Final = 5.0
LATER_CHECK_S: Final = 2.0

_LOGGER = logging.getLogger(__name__)


class NoReading(Exception):
    """The meter has no current total to act on."""


class DemandResponse:
    def __init__(self, manager: RelayManager, meter: Meter, reading_timeout_s: float) -> None:
        self._manager = manager
        self._meter = meter
        self._reading_timeout_s = reading_timeout_s
        # One switching step at a time: each acts on what the previous one left. A restore
        # holds it per relay, not across its stagger, so a shed never waits for one.
        self._lock = asyncio.Lock()
        self._restoring = asyncio.Lock()  # restores one after another (one inrush at a time)
        self._sheds = 0  # sheds so far: a restore that sees it move stops
        self._shed_came = asyncio.Event()  # wakes a restore's stagger wait at once
        # The relay changes the newest RPICT reading already shows: a total read before a
        # switch is no baseline (shedding would count the switched load as its own drop).
        self._measured_changes = manager.changes
        self._rpict_lines = 0
        # Relays a restore found inside their minimum off time: switched on once it is over
        # (a heat pump shed at the peak must come back without a second restore).
        self._later: dict[int, asyncio.Task[None]] = {}
        meter.add_listener(self._on_state)

    async def shed(self, *, limit_w: float | None = None, reduce_w: float | None = None
                   ) -> dict[str, Any]:
        """Switch relays off, lowest priority first, until the total is under the limit."""
        async with self._lock:
            self._sheds += 1
            self._shed_came.set()
            self._cancel_later()  # the peak is back: what was shed stays off
            snapshot = self._meter.snapshot()
            before = snapshot["total_power_w"]
            if before is not None and self._manager.changes != self._measured_changes:
                reading = self._next_reading()  # a relay switched since the last reading
                try:
                    async with asyncio.timeout(self._reading_timeout_s):
                        before = await reading
                except TimeoutError:
                    before = None
                snapshot = self._meter.snapshot()
            if before is None:
                raise NoReading
            # A reduction larger than the total asks for everything: a limit of 0, not -1 MW.
            limit = limit_w if limit_w is not None else max(before - (reduce_w or 0.0), 0.0)
            total: float = before
            shed: list[dict[str, Any]] = []
            skipped: list[dict[str, Any]] = []
            draws = self._draws(snapshot)
            order = sorted(self._manager.relays,
                           key=lambda r: (r.priority, -draws.get(r.id, 0.0), r.id))
            for relay in order:
                if total < limit:
                    break
                reason = self._skip_reason(relay)
                if reason is not None:
                    skipped.append({"id": relay.id, "reason": reason})
                    continue
                try:
                    await self._manager.switch(relay.id, False, shed=True)
                except RelayChangedMeanwhile:
                    skipped.append({"id": relay.id, "reason": "off"})
                    continue
                except RelayError as error:
                    skipped.append({"id": relay.id, "reason": error.code})
                    continue
                # Registered after the acknowledgement: only a later reading shows the drop.
                reading = self._next_reading()
                try:
                    async with asyncio.timeout(self._reading_timeout_s):
                        after = await reading
                except TimeoutError:
                    shed.append({"id": relay.id, "name": relay.name, "drop_w": None})
                    break  # no reading to decide on: do not switch blindly
                # Switching a load off frees at least nothing: a rise is another load
                # starting meanwhile, not this relay's doing.
                relay.last_drop_w = round(max(total - after, 0.0), 2)
                shed.append({"id": relay.id, "name": relay.name, "drop_w": relay.last_drop_w})
                total = after
            return {
                "limit_w": round(limit, 2),
                "total_before_w": before,
                "total_after_w": total,
                "reached": total < limit,
                "shed": shed,
                "skipped": skipped,
            }

    async def restore(self, stagger_s: float = DEFAULT_STAGGER_S) -> dict[str, Any]:
        """Switch the shed relays back on, highest priority first, `stagger_s` apart; a
        shed arriving meanwhile wins, and the relays not yet restored stay shed."""
        restored: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        pending: list[dict[str, Any]] = []
        interrupted = False
        sheds = self._sheds  # as asked: a shed while this waits for an earlier restore wins
        async with self._restoring:
            if self._sheds != sheds:
                return {"restored": restored, "failed": failed, "pending": pending,
                        "interrupted": True}
            self._shed_came.clear()
            order = sorted((r for r in self._manager.relays if r.shed),
                           key=lambda r: (-r.priority, r.id))
            for index, relay in enumerate(order):
                if index:  # one inrush at a time
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(stagger_s):
                            await self._shed_came.wait()
                async with self._lock:
                    if self._sheds != sheds:
                        interrupted = True
                        break
                    if not relay.shed:
                        continue  # switched on by hand meanwhile
                    if left := self._manager.min_off_left_s(relay):
                        self._restore_later(relay, sheds)
                        pending.append({"id": relay.id, "name": relay.name, "in_s": left})
                        continue
                    try:
                        await self._manager.switch(relay.id, True, restore=True)
                    except RelayChangedMeanwhile:
                        continue  # switched by hand while this waited for the relay
                    except RelayError as error:
                        failed.append({"id": relay.id, "name": relay.name,
                                       "error": error.code})
                    else:
                        restored.append({"id": relay.id, "name": relay.name})
        return {"restored": restored, "failed": failed, "pending": pending,
                "interrupted": interrupted}

    def _restore_later(self, relay: Relay, sheds: int) -> None:
        async def restore() -> None:
            # Looked at again every few seconds: the user may change the minimum meanwhile.
            while (left := self._manager.min_off_left_s(relay)) > 0:  # noqa: ASYNC110
                await asyncio.sleep(min(left, LATER_CHECK_S))
            async with self._lock:
                # A shed since cancels this; a relay switched by hand is no longer shed.
                if self._sheds != sheds or not relay.shed:
                    return
                try:
                    await self._manager.switch(relay.id, True, restore=True)
                except RelayChangedMeanwhile:
                    return
                except RelayError as error:
                    _LOGGER.warning("Relay %s (%s) not restored after its minimum off time: "
                                    "%s; it stays shed until the next restore",
                                    relay.id, relay.name, error.code)
                else:
                    _LOGGER.info("Relay %s (%s) restored after its minimum off time",
                                 relay.id, relay.name)

        if (earlier := self._later.pop(relay.id, None)) is not None:
            earlier.cancel()
        task = asyncio.get_running_loop().create_task(restore())
        self._later[relay.id] = task
        task.add_done_callback(
            lambda done: self._later.pop(relay.id, None) if self._later.get(relay.id) is done
            else None)

    def _cancel_later(self) -> None:
        for task in self._later.values():
            task.cancel()
        self._later.clear()

    async def stop(self) -> None:
        """Cancel the restores waiting for a minimum off time (the relays stay shed, and
        saved as such: the next restore after a restart switches them on)."""
        tasks = list(self._later.values())
        self._cancel_later()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _skip_reason(self, relay: Relay) -> str | None:
        if not self._manager.available(relay):
            return "unavailable"
        if relay.state is False:
            return "off"
        if self._manager.inside_min_on(relay):
            return "min_on_time"
        return None

    def _draws(self, snapshot: dict[str, Any]) -> dict[int, float]:
        """What each relay draws now, for ties: its CT channel, else its last measured drop."""
        channel_powers = {c["id"]: c["power_w"] for c in snapshot["channels"]}
        draws: dict[int, float] = {}
        for relay in self._manager.relays:
            power = channel_powers.get(relay.config.channel) if relay.config.channel else None
            if power is None:
                power = relay.last_drop_w
            draws[relay.id] = power or 0.0
        return draws

    def _on_state(self, snapshot: dict[str, Any]) -> None:
        lines = snapshot["boards"]["rpict"]["lines_ok"]
        if lines != self._rpict_lines:
            self._rpict_lines = lines
            self._measured_changes = self._manager.changes

    def _next_reading(self) -> asyncio.Future[float]:
        """The total of the next RPICT reading that has one."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        lines = self._meter.snapshot()["boards"]["rpict"]["lines_ok"]

        def on_state(snapshot: dict[str, Any]) -> None:
            total = snapshot["total_power_w"]
            if not future.done() and snapshot["boards"]["rpict"]["lines_ok"] > lines \
                    and total is not None:
                future.set_result(total)

        remove = self._meter.add_listener(on_state)
        future.add_done_callback(lambda _: remove())
        return future
