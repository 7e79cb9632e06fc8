"""Calibrate the voltage board against a multimeter (docs/api.md, "Voltage calibration").

The firmware's `cal` (volts per ADC RMS count, kept in its flash) scales its Vrms linearly,
so with the mains measured by a multimeter the right factor is cal * V_multimeter / V_board
(firmware/README.md, "Calibration"). The board's last hello says its cal, its last
measurement V_board; the new factor is sent as `CAL` and acknowledged before it counts.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from .board_relays import BoardCommander
from .protocol import (
    FIRMWARE_DEFAULT_CALS,
    AckFrame,
    BoardFrame,
    HelloFrame,
    MeasurementFrame,
)
from .serial_link import SerialLinkError

_LOGGER = logging.getLogger(__name__)

MIN_MEASURED_V: Final = 50.0  # the add-on's lowest mains (MIN_MAINS_VRMS)
MAX_MEASURED_V: Final = 500.0  # the protocol's highest Vrms
# A trim corrects a few percent; a reading more than this share away from the board's is a
# typo, the wrong phase or a ZMPT101B trimmer that needs turning first (a cal that far off
# would hide it).
MAX_CORRECTION: Final = 0.25
# The firmware's defaults are for 230 V: the first calibration of a board on a 120 V grid
# needs about half, so a board still on one may be corrected down to this share; and up to
# the other, as the old default 1.8 read the usual trim 20-30 % low (not further: 400
# typed for 240 V made every power 1.7 times too high).
MIN_FIRST_RATIO: Final = 0.4
MAX_FIRST_RATIO: Final = 1.5


class CalibrationError(Exception):
    """Calibration failed; `status` and `code` are its API answer, the message says why."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


class VoltageCalibration:
    """Knows the board's cal and Vrms (a meter frame listener) and sends a new cal."""

    def __init__(self, commander: BoardCommander) -> None:
        self._commander = commander
        self._cal: float | None = None  # from the last hello; None while unknown
        # What the board's flash holds (its boot factor): the hello's, or the last CAL it
        # stored; differs from _cal after a CAL it could not store (EFLASH).
        self._stored_cal: float | None = None
        self._board_v: float | None = None  # the last measurement's Vrms, None when empty
        self._one_at_a_time = asyncio.Lock()

    @property
    def cal(self) -> float | None:
        """The factor the board uses (its hello's, or the last acknowledged CAL)."""
        return self._cal

    def on_frame(self, frame: BoardFrame) -> None:
        if isinstance(frame, HelloFrame):
            self._cal, self._board_v = frame.cal, None
            self._stored_cal = frame.cal
        elif isinstance(frame, MeasurementFrame):
            self._board_v = frame.vrms_v

    async def calibrate(self, measured_v: float) -> dict[str, Any]:
        """Make the board read `measured_v` now; raises CalibrationError."""
        if not MIN_MEASURED_V <= measured_v <= MAX_MEASURED_V:
            raise CalibrationError(400, "invalid", f"measured_v must be {MIN_MEASURED_V:g} "
                                   f"to {MAX_MEASURED_V:g} V (got {measured_v:g})")
        async with self._one_at_a_time:
            return await self._calibrate(measured_v)

    async def _calibrate(self, measured_v: float) -> dict[str, Any]:
        cal, board_v = self._cal, self._board_v
        if not self._commander.connected:
            raise CalibrationError(503, "board_unavailable",
                                   "the voltage board is not connected")
        if cal is None:
            raise CalibrationError(503, "board_unavailable", "the voltage board's factor is "
                                   "unknown until its next hello (reconnect it or restart "
                                   "the add-on)")
        if board_v is None:
            raise CalibrationError(503, "board_unavailable", "the voltage board has no voltage "
                                   "measured under its current factor yet: try again in a "
                                   "second")
        ratio = measured_v / board_v
        first = any(abs(cal - default) < 1e-4 for default in FIRMWARE_DEFAULT_CALS)
        lowest, highest = ((MIN_FIRST_RATIO, MAX_FIRST_RATIO) if first
                           else (1 - MAX_CORRECTION, 1 + MAX_CORRECTION))
        if not lowest <= ratio <= highest:
            raise CalibrationError(
                400, "invalid", f"the board reads {board_v:g} V: {measured_v:g} V is more "
                f"than {(1 - lowest if ratio < 1 else highest - 1):.0%} "
                f"{'below' if ratio < 1 else 'above'} it; check the reading and the ZMPT101B "
                "trimmer")
        new_cal = round(cal * ratio, 5)
        try:
            ack: AckFrame = await self._commander.command("CAL", f"{new_cal:.5f}")
        except (SerialLinkError, TimeoutError):
            # It may still arrive and be stored (a board busy rebooting reads it late).
            self._cal = None
            raise CalibrationError(504, "board_timeout", "the voltage board did not "
                                   "acknowledge the new factor in time") from None
        if ack.result == "EFLASH":
            # Applied, so readings from now on carry it, but the next boot brings back cal.
            self._cal, self._board_v = new_cal, None
            boot = "its stored factor" if self._stored_cal is None else f"{self._stored_cal:g}"
            _LOGGER.error("The voltage board uses cal %g now but could not store it in its "
                          "flash: after its next boot it reads with %s again", new_cal, boot)
            raise CalibrationError(507, "not_stored", f"the board uses the new factor "
                                   f"{new_cal:g} but could not store it in its flash (EFLASH): "
                                   f"after its next boot it reads with {boot} again")
        if ack.result != "OK":
            raise CalibrationError(502, "board_rejected", f"the board answered {ack.result}")
        # Readings taken under the old factor must not be corrected again.
        self._cal, self._board_v = new_cal, None
        self._stored_cal = new_cal
        _LOGGER.info("Voltage board calibrated: cal %g -> %g (it read %g V, the multimeter "
                     "%g V)", cal, new_cal, board_v, measured_v)
        return {"cal_before": cal, "cal": new_cal, "board_v_before": board_v,
                "measured_v": measured_v}
