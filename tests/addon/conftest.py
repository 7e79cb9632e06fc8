"""Shared fixtures for the add-on tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .ptys import PtyPort


@pytest.fixture
def pty_port(tmp_path: Path) -> Iterator[Callable[[str], PtyPort]]:
    """Factory: `pty_port("ttyRPICT")` gives an unplugged `PtyPort` under tmp_path.

    Call `.plug()` to make the device appear. Every port is unplugged after the test.
    """
    ports: list[PtyPort] = []

    def make(name: str) -> PtyPort:
        port = PtyPort(tmp_path / name)
        ports.append(port)
        return port

    yield make
    for port in ports:
        port.unplug()
