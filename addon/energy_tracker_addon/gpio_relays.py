"""Relays on the Raspberry Pi's GPIO, through the GPIO character device (libgpiod v2).

`gpiod` is imported only when GPIO relays are configured, so the add-on runs where it is
missing (a development machine); the relays then stay unavailable, and the log says why.
Outputs are active high (a transistor or "high level trigger" relay module).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final, NamedTuple, Protocol

from .relays import RelayRejected, RelayUnavailable, Report

if TYPE_CHECKING:
    from gpiod import LineSettings
    from gpiod.line import Value

_LOGGER = logging.getLogger(__name__)

CHIP_PATH: Final = "/dev/gpiochip0"  # the 40-pin header's BCM lines on every Pi model
CONSUMER: Final = "energy_tracker"


class LineRequest(Protocol):
    """The part of `gpiod.LineRequest` used here (the boundary a test double replaces)."""

    def get_value(self, line: int | str) -> Value: ...

    def set_value(self, line: int | str, value: Value) -> None: ...

    def reconfigure_lines(
        self, config: dict[Iterable[int | str] | int | str, LineSettings | None]
    ) -> None: ...

    def release(self) -> None: ...


class OpenedLines(NamedTuple):
    request: LineRequest
    outputs: frozenset[int]  # the pins that were outputs already (driven by an earlier run)


type RequestOpener = Callable[[str, tuple[int, ...]], OpenedLines]


def request_lines(chip: str, pins: tuple[int, ...]) -> OpenedLines:
    """Request `pins` without changing them (direction as is), so a restart keeps them;
    which of them were outputs is read first."""
    import gpiod  # optional: see the module docstring
    from gpiod.line import Direction

    with gpiod.Chip(chip) as handle:
        # Not a Pi's header (another board, a USB adapter's GPIO): said, not a ValueError
        # from gpiod that stopped the add-on.
        lines = handle.get_info().num_lines
        if missing := [pin for pin in pins if not 0 <= pin < lines]:
            raise OSError(errno.ENXIO, f"{chip} has {lines} lines, so no BCM "
                          f"{', '.join(map(str, missing))}: is it the Raspberry Pi's header?")
        outputs = frozenset(pin for pin in pins
                            if handle.get_line_info(pin).direction == Direction.OUTPUT)
    request = gpiod.request_lines(
        chip, consumer=CONSUMER, config={pins: gpiod.LineSettings(direction=Direction.AS_IS)}
    )
    return OpenedLines(request, outputs)


class GpioRelays:
    """Relay backend: relay id → BCM pin on `chip`; the state is the line read back."""

    def __init__(
        self,
        pins: Mapping[int, int],
        report: Report,
        open_request: RequestOpener = request_lines,
        chip: str = CHIP_PATH,
    ) -> None:
        self._pins = dict(pins)
        self._report = report
        self._open_request = open_request
        self._chip = chip
        self._request: LineRequest | None = None

    def available(self, relay_id: int) -> bool:
        return self._request is not None and relay_id in self._pins

    async def start(self) -> None:
        pins = tuple(self._pins.values())
        try:
            from gpiod import LineSettings
            from gpiod.line import Direction, Value

            request, outputs = self._open_request(self._chip, pins)
        except ImportError:
            _LOGGER.error("GPIO relays on BCM %s are configured, but the gpiod package is "
                          "not installed: they stay unavailable", list(pins))
            return
        except (OSError, ValueError) as error:  # ValueError: gpiod's own checks
            _LOGGER.error("GPIO relays on BCM %s are unavailable: cannot request them from "
                          "%s (%s); the add-on needs `gpio: true` and a free line",
                          list(pins), self._chip, error)
            return
        try:
            # Keep each output as it is (a restart must not click the relays): read the
            # level, then make the line an output driving that same level. A line that is
            # still an input (first start after a boot) starts off: what it reads is its
            # pull resistor (BCM 0-8 pull up), not a relay anybody switched on.
            levels = {pin: request.get_value(pin) if pin in outputs else Value.INACTIVE
                      for pin in pins}
            request.reconfigure_lines({
                pin: LineSettings(direction=Direction.OUTPUT, output_value=level)
                for pin, level in levels.items()
            })
        except OSError as error:
            request.release()
            _LOGGER.error("GPIO relays on BCM %s are unavailable: %s", list(pins), error)
            return
        self._request = request
        self._read_back()
        _LOGGER.info("GPIO relays on %s BCM %s", self._chip, list(pins))

    async def stop(self) -> None:
        request, self._request = self._request, None
        if request is not None:
            # Released lines keep their level on the Pi: stopping does not switch anything.
            request.release()

    async def switch(self, relay_id: int, on: bool) -> None:
        from gpiod.line import Value  # start() succeeded, so it imports

        request = self._request
        if request is None or relay_id not in self._pins:
            raise RelayUnavailable
        try:
            request.set_value(self._pins[relay_id], Value.ACTIVE if on else Value.INACTIVE)
        except OSError as error:
            raise RelayRejected(str(error)) from None
        finally:
            self._read_back()

    def _read_back(self) -> None:
        from gpiod.line import Value

        request = self._request
        if request is None:
            return
        for relay_id, pin in self._pins.items():
            try:
                self._report(relay_id, request.get_value(pin) == Value.ACTIVE)
            except OSError as error:
                _LOGGER.warning("Cannot read GPIO %d back: %s", pin, error)
