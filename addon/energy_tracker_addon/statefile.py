"""Files written atomically, and a small JSON state file that keeps its previous good write.

`write_atomic` is the one crash-safe write of the add-on (counters, state, token, relay
settings, forecast weights): temp file beside the target, fsync, optionally the previous
file to a backup, rename, fsync of the directory. A JSON state file's load falls back to
the backup when the main file is missing or does not decode.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


def temp_prefix(path: Path) -> str:
    """How `write_atomic` names its temp files for `path` (a crash can leave one behind)."""
    return f".{path.name}."


def write_atomic(path: Path, text: str, *, mode: int | None = None,
                 keep_previous: Path | None = None) -> None:
    """Replace `path` with `text` so that a crash leaves the old or the new file, never
    half of one. `mode` is the file's from its first byte (a secret is never readable by
    others); `keep_previous` receives the file being replaced, if there is one."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    # The renames are only durable once the directory entry is
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class JsonStateFile:
    """One JSON document at `path` (and `<path>.bak`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.backup_path = path.with_name(path.name + ".bak")

    def load(self) -> Any:
        """The last good document, or None when there is none (logged when corrupt)."""
        for candidate in (self.path, self.backup_path):
            try:
                return json.loads(candidate.read_text(encoding="utf-8"))
            except FileNotFoundError:
                continue
            except (ValueError, UnicodeDecodeError) as error:
                _LOGGER.error("State file %s is corrupt (%s)", candidate, error)
        return None

    def save(self, data: Any) -> None:
        """Write atomically; OSError is left to the caller (which logs and retries later)."""
        write_atomic(self.path, json.dumps(data, separators=(",", ":")),
                     keep_previous=self.backup_path)


class VersionedStateFile(JsonStateFile):
    """A JsonStateFile holding `{"version": N, ...}`: the version check and the logging of
    unwritable or unusable state live here once, for every service that keeps state."""

    def __init__(self, path: Path, version: int, what: str, logger: logging.Logger) -> None:
        super().__init__(path)
        self.version = version
        self._what = what  # "gas counter file": how log lines name this state
        self._logger = logger  # the owning service's, so its log lines keep their origin

    def write(self, payload: dict[str, Any]) -> bool:
        """Save atomically; an OSError is logged and False returned (the caller retries)."""
        try:
            self.save({"version": self.version, **payload})
        except OSError as error:
            self._logger.error("Could not write the %s: %s", self._what, error)
            return False
        return True

    def read(self, parse: Callable[[dict[str, Any]], T], consequence: str,
             errors: tuple[type[Exception], ...] = ()) -> T | None:
        """`parse(document)`, or None when there is none or it is unusable.

        `parse` raises KeyError, TypeError, ValueError (or one of `errors`) on a document it
        cannot use; that is logged with `consequence` ("counting from zero").
        """
        data = self.load()
        if data is None:
            return None
        caught: tuple[type[Exception], ...] = (KeyError, TypeError, ValueError, *errors)
        try:
            version = data.get("version") if isinstance(data, dict) else None
            if version != self.version:
                raise ValueError(f"unknown version {version!r}")
            return parse(data)
        except caught as error:
            self._logger.error("%s %s unusable (%s): %s", self._what.capitalize(), self.path,
                               error, consequence)
            return None
