"""The firmware core's C++ unit tests (firmware/host/tests), built and run on the host.

They cover Vrms/frequency accuracy on synthetic ADC streams, the ET1 board's command
handling, rejection counters, watchdog, gas debounce and flash settings; see the test names
in the output of a failure.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path


def test_core_unit_tests_pass(firmware_build: Path) -> None:
    done = subprocess.run(
        [str(firmware_build / "et1core_tests")], capture_output=True, text=True, timeout=120
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    summary = re.search(r"^(\d+) tests, (\d+) failed$", done.stdout, re.MULTILINE)
    assert summary is not None, report
    # All suites linked in and ran (the runner also fails on zero tests).
    assert int(summary[1]) >= 30, report
    assert summary[2] == "0", report
