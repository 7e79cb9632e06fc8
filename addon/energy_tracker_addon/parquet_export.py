"""Parquet files of the history, written by a short-lived child process.

Writing one Parquet file in the add-on's own process left it 120-140 MiB larger for good:
pyarrow's libraries and its memory pool, which the allocator does not give back. So the
parent (`write_parquet`, on the history's worker thread) streams the rows to
`python -m energy_tracker_addon.parquet_export DEST`, which converts and writes them, and
everything pyarrow took goes back to the system when the child exits.

The stream on the child's stdin: one line of JSON, the value column names; then per chunk
an 8-byte little-endian row count followed by the rows as little-endian float64, row by
row: time in ms since the epoch, then each column, NaN for an unknown value (the history
stores no NaN, so nothing else reads back as null). On failure the child writes one line
of JSON to stderr, `{"errno": …, "message": …}`, and exits with 1.
"""

from __future__ import annotations

import contextlib
import json
import struct
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any, Final

import numpy as np

_COUNT: Final = struct.Struct("<Q")
_FLOAT: Final = np.dtype("<f8")


class ParquetWriterFailed(OSError):
    """The child could not write the file; errno as the child's OSError had it, if any."""


def write_parquet(destination: Path, columns: Sequence[str],
                  chunks: Iterable[Sequence[Sequence[float | None]]]) -> int:
    """Write `chunks` of rows (time in ms, then `columns`) to `destination`; the row count.

    Runs in the calling thread and blocks on the child; an exception from `chunks` (an
    export cancelled) stops the child and is raised as it was.
    """
    child = subprocess.Popen(
        [sys.executable, "-m", __name__, str(destination)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    assert child.stdin is not None  # both asked for as pipes
    assert child.stderr is not None
    count = 0
    finished = False
    try:
        try:
            child.stdin.write(json.dumps(list(columns)).encode() + b"\n")
            for rows in chunks:
                block = np.asarray(rows, dtype=_FLOAT)  # None becomes NaN
                child.stdin.write(_COUNT.pack(len(block)) + block.tobytes())
                count += len(block)
            child.stdin.close()
        except BrokenPipeError:
            pass  # the child failed: its stderr says why
        finished = True
        error = child.stderr.read()
        if child.wait() != 0:
            raise _failure(error, child.returncode)
        return count
    finally:
        if not finished:
            child.kill()
            child.wait()
        with contextlib.suppress(OSError):
            child.stdin.close()
        child.stderr.close()


def _failure(stderr: bytes, returncode: int) -> ParquetWriterFailed:
    lines = stderr.decode(errors="replace").strip().splitlines()
    with contextlib.suppress(ValueError, IndexError, TypeError):
        said = json.loads(lines[-1])
        return ParquetWriterFailed(said["errno"], said["message"])
    detail = lines[-1] if lines else f"exit status {returncode}"
    return ParquetWriterFailed(None, f"the Parquet writer failed: {detail}")


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError("the row stream ended inside a chunk")
    return data


def _write(destination: Path, stream: IO[bytes]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: list[str] = json.loads(stream.readline())
    schema = pa.schema(
        [pa.field("timestamp", pa.timestamp("ms", tz="UTC"))]
        + [pa.field(name, pa.float64()) for name in columns]
    )
    width = len(columns) + 1
    with pq.ParquetWriter(destination, schema) as writer:
        while header := stream.read(_COUNT.size):
            (rows,) = _COUNT.unpack(header + _read_exactly(stream, _COUNT.size - len(header)))
            block = np.frombuffer(_read_exactly(stream, rows * width * 8), dtype=_FLOAT)
            block = block.reshape(rows, width)
            arrays: list[Any] = [
                pa.array(block[:, 0].astype(np.int64)).cast(pa.timestamp("ms", tz="UTC"))
            ]
            arrays += [pa.array(block[:, i], mask=np.isnan(block[:, i]))
                       for i in range(1, width)]
            writer.write_batch(pa.record_batch(arrays, schema=schema))


def main() -> int:
    try:
        _write(Path(sys.argv[1]), sys.stdin.buffer)
    except OSError as error:
        sys.stderr.write(json.dumps({"errno": error.errno,
                                     "message": error.strerror or str(error)}) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
