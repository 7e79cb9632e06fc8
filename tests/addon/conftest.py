"""Shared fixtures for the add-on tests, and where each test file runs.

The add-on's own tests run in .venv-addon, which holds exactly the image's pins
(addon/requirements.txt): `.venv-addon/bin/python -m pytest tests/addon`. The files that
check it against Home Assistant (its MQTT schemas, the integration's constants) run in the
main .venv, whose aiohttp is Home Assistant's; there the others are skipped, saying so.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .ptys import PtyPort

NEEDS_HOME_ASSISTANT = {"test_mqtt.py", "test_packaging.py"}
IN_HOME_ASSISTANT_VENV = importlib.util.find_spec("homeassistant") is not None

collect_ignore = [] if IN_HOME_ASSISTANT_VENV else sorted(NEEDS_HOME_ASSISTANT)


def pytest_configure(config: pytest.Config) -> None:
    if not IN_HOME_ASSISTANT_VENV:
        # What Home Assistant's pytest plugin does in .venv: the tests read INFO lines.
        logging.getLogger().setLevel(logging.INFO)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not IN_HOME_ASSISTANT_VENV:
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(
        reason="the add-on's own test: run by .venv-addon/bin/python -m pytest tests/addon "
               "(the image's pins)")
    for item in items:
        path = Path(str(item.fspath))
        if path.parent == here and path.name not in NEEDS_HOME_ASSISTANT:
            item.add_marker(skip)


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
