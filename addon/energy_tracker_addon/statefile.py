"""Files written atomically, and a small JSON state file that keeps its previous good write.

`write_atomic` is the one crash-safe write of the add-on (counters, state, token, relay
settings, forecast weights): temp file beside the target, fsync, optionally the previous
file to a backup, rename, fsync of the directory. A JSON state file's load falls back to
the backup when the main file is missing or does not decode.

`LiveCopy` is the other half of keeping counters: the state as last published, rewritten
in place without fsync before every publication. A killed or crashed process keeps every
write that returned (the pages belong to the kernel), so a restart resumes from exactly
what was shown and no counter steps back; a power cut may lose it, and the fsynced file,
at most one persist interval old, is used. The kernel writes the page back at its own pace
(about every 30 s), so the storage card sees no more writes than before.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")
REVISION_KEY: Final = "_revision"


def temp_prefix(path: Path) -> str:
    """How `write_atomic` names its temp files for `path` (a crash can leave one behind)."""
    return f".{path.name}."


def write_atomic(path: Path, text: str | bytes, *, mode: int | None = None,
                 keep_previous: Path | None = None) -> None:
    """Replace `path` with `text` so that a crash leaves the old or the new file, never
    half of one. `mode` is the file's from its first byte (a secret is never readable by
    others); `keep_previous` receives the file being replaced, if there is one."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode() if isinstance(text, str) else text)
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


class WriteTrouble:
    """A write that keeps failing (a full or read-only disk) is said once, not at every
    attempt; when it works again that is said too, if `recovered` is given."""

    def __init__(self, logger: logging.Logger, failed: str,
                 recovered: str | None = None) -> None:
        self._logger = logger
        self._failed = failed  # a format with one %s: the error
        self._recovered = recovered
        self.active = False

    def failed(self, error: OSError) -> None:
        if not self.active:
            self._logger.error(self._failed, error)
        self.active = True

    def succeeded(self) -> None:
        if self.active and self._recovered:
            self._logger.info(self._recovered)
        self.active = False


class LiveCopy:
    """`<path>.live`: a revision-numbered text rewritten in place, checked by a CRC."""

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".live")

    def write(self, revision: int, text: str) -> None:
        """One pwrite of header and text; OSError is left to the caller."""
        body = text.encode("utf-8")
        data = b"%08x %d %d\n" % (zlib.crc32(body), revision, len(body)) + body
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)

    def read(self) -> tuple[int, str] | None:
        """(revision, text), or None when absent or torn (a power cut mid-write)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:  # unreadable (I/O error, a folder in its place)
            _LOGGER.error("Ignoring %s, which cannot be read (%s)", self.path, error)
            return None
        header, _, rest = data.partition(b"\n")
        try:
            crc, revision, length = (int(field, base) for field, base in
                                     zip(header.split(b" "), (16, 10, 10), strict=True))
            body = rest[:length]
            if len(body) != length or zlib.crc32(body) != crc:
                raise ValueError("checksum mismatch")
            return revision, body.decode("utf-8")
        except (ValueError, UnicodeDecodeError) as error:
            _LOGGER.warning("Ignoring %s, torn by an interrupted write (%s)", self.path, error)
            return None


class JsonStateFile:
    """One JSON document at `path` (and `<path>.bak`), and its live copy (`<path>.live`).

    A dict document carries a `_revision` (no option-made key starts with "_") that grows
    with every write, durable or live, so loading picks whichever of the two is newer.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.backup_path = path.with_name(path.name + ".bak")
        self.live = LiveCopy(path)
        self._revision = 0

    def load(self) -> Any:
        """The newest good document, or None when there is none (logged when corrupt)."""
        durable: Any = None
        for candidate in (self.path, self.backup_path):
            try:
                durable = json.loads(candidate.read_text(encoding="utf-8"))
                break
            except FileNotFoundError:
                continue
            except (ValueError, UnicodeDecodeError) as error:
                _LOGGER.error("State file %s is corrupt (%s)", candidate, error)
            except OSError as error:  # unreadable (I/O error, a folder in its place)
                _LOGGER.error("State file %s cannot be read (%s)", candidate, error)
        revision = durable.get(REVISION_KEY, 0) if isinstance(durable, dict) else 0
        live = self.live.read()
        unnumbered = isinstance(durable, dict) and REVISION_KEY not in durable
        if live is not None and unnumbered:
            # Written by an add-on older than live copies (0.3.6), after any copy there is.
            _LOGGER.info("Ignoring %s: %s was written later, by an older add-on",
                         self.live.path, self.path)
            self._revision = max(self._revision, live[0])  # renumbered above the copy
            live = None
        if live is not None and live[0] > revision:
            try:
                durable, revision = json.loads(live[1]), live[0]
            except ValueError as error:
                _LOGGER.error("State file %s is corrupt (%s)", self.live.path, error)
        self._revision = max(self._revision, revision if isinstance(revision, int) else 0)
        if isinstance(durable, dict):
            durable.pop(REVISION_KEY, None)  # the caller gets back what it saved
        if unnumbered:
            # Numbered from now on, or a kill before the next save would leave live copies
            # that the rule above ignores again.
            try:
                self.save(durable)
            except OSError as error:
                _LOGGER.warning("Could not renumber %s (%s): it is saved again later",
                                self.path, error)
        return durable

    def save(self, data: Any) -> None:
        """Write atomically; OSError is left to the caller (which logs and retries later)."""
        write_atomic(self.path, self._encode(data), keep_previous=self.backup_path)

    def save_live(self, data: Any) -> None:
        """Rewrite the live copy (no fsync); OSError is left to the caller."""
        text = self._encode(data)
        self.live.write(self._revision, text)

    def _encode(self, data: Any) -> str:
        self._revision += 1
        if isinstance(data, dict):
            data = {**data, REVISION_KEY: self._revision}
        return json.dumps(data, separators=(",", ":"))


class VersionedStateFile(JsonStateFile):
    """A JsonStateFile holding `{"version": N, ...}`: the version check and the logging of
    unwritable or unusable state live here once, for every service that keeps state."""

    def __init__(self, path: Path, version: int, what: str, logger: logging.Logger) -> None:
        super().__init__(path)
        self.version = version
        self._what = what  # "gas counter file": how log lines name this state
        self._logger = logger  # the owning service's, so its log lines keep their origin
        # Per kind of write, as rewriting the live copy in place may still work while a
        # new durable file cannot be made.
        self._trouble = {
            live: WriteTrouble(logger, f"Could not write the {what}"
                               f"{' (live copy)' if live else ''}: %s")
            for live in (False, True)
        }

    def write(self, payload: dict[str, Any], *, live: bool = False) -> bool:
        """Save atomically (`live`: rewrite the live copy instead); an OSError is logged
        once until a write of that kind works again, and False returned (the caller
        retries)."""
        try:
            (self.save_live if live else self.save)({"version": self.version, **payload})
        except OSError as error:
            self._trouble[live].failed(error)
            return False
        self._trouble[live].succeeded()
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
