"""Crash-safe file writes shared by every role: readers never see half a file or half a record."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A unique temporary path beside `path` to write to; when the block ends, the file is flushed to disk
    and renamed over `path`.

    The rename is atomic on POSIX: a reader (or a restart after `kill -9`) finds the old file or the
    new one, never a mix; a block that raises leaves no temporary file behind.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_atomically(path: str | Path, data: bytes | str) -> None:
    """Write `data` to `path` through `atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def wait_for_file(path: str | Path, timeout: float) -> str:
    """Block until `path` exists and return its text, or raise TimeoutError; for files another process
    writes with `write_atomically`, so that the first sight of one is the whole of it."""
    path, deadline = Path(path), time.time() + timeout
    while not path.exists():
        if time.time() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout:.0f} s")
        time.sleep(0.1)
    return path.read_text()


def append_jsonl(path: str | Path, records: Iterable[dict]) -> None:
    """Append one JSON line per record and flush them to disk before returning."""
    with Path(path).open("a") as file:
        file.writelines(json.dumps(record) + "\n" for record in records)
        file.flush()
        os.fsync(file.fileno())
