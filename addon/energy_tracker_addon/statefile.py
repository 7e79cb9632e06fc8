"""A small JSON state file written atomically, with the previous good write kept as backup.

Same crash guarantee as the energy counter store (persistence.py): temp file, fsync,
previous file to `<name>.bak`, rename, fsync of the directory; a load falls back to the
backup when the main file is missing or does not decode.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

_LOGGER = logging.getLogger(__name__)


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
        directory = self.path.parent
        fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            if self.path.exists():
                os.replace(self.path, self.backup_path)
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
