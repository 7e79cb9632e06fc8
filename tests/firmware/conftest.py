"""Build the firmware's portable core on the host (CMake, g++) once per test session."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .pty_board import PtyBoard

FIRMWARE_DIR = Path(__file__).resolve().parents[2] / "firmware"


@pytest.fixture(scope="session")
def firmware_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CMake build directory (outside the source tree) holding et1core_tests and
    et1_pty_board, built with AddressSanitizer and UBSan."""
    missing = [tool for tool in ("cmake", "make", "c++") if shutil.which(tool) is None]
    if missing:
        pytest.skip(
            f"host firmware build needs {', '.join(missing)} (apt-get install g++ cmake make)"
        )
    build = tmp_path_factory.mktemp("firmware-build")
    env = {**os.environ, "MAKEFLAGS": "-j2"}
    for cmd in (
        ["cmake", "-S", str(FIRMWARE_DIR), "-B", str(build), "-DET1_SANITIZE=ON"],
        ["cmake", "--build", str(build)],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return build


@pytest.fixture
def start_board(firmware_build: Path) -> Iterator[Callable[..., PtyBoard]]:
    """Factory: `start_board("--freq", "60")` runs et1_pty_board on a fresh pty.

    Every board still running is stopped after the test.
    """
    boards: list[PtyBoard] = []

    def start(*options: str) -> PtyBoard:
        board = PtyBoard(firmware_build / "et1_pty_board", *options)
        boards.append(board)
        return board

    yield start
    for board in boards:
        board.stop()
