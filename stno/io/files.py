"""Writes that never leave half a file: every output of STNO goes through here.

A writer works on a temporary name in the destination's folder (``.<name>.<pid>.tmp``, plus the
destination's extension where the writer picks its format by extension, as video encoders do)
and :func:`commit` renames it into place only when it is complete: a crash, Ctrl-C or a full disk
leaves the previous file (or none), never a torn one. ``durable=True`` (checkpoints) also flushes
the data and the rename to disk. A killed writer's temporary is removed by
:func:`remove_orphan_temporaries` the next time that folder is written.

    with atomic_output(path) as temporary:
        temporary.write_text(...)
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "atomic_output",
    "commit",
    "discard",
    "remove_orphan_temporaries",
    "temporary_path",
    "write_text_atomic",
]

_TEMPORARY = re.compile(r"^\..+\.(\d+)\.tmp(\.[A-Za-z0-9]+)?$")


def temporary_path(path: str | os.PathLike, keep_suffix: bool = False) -> Path:
    """The temporary name of ``path`` for this process, in the same folder (same file system, so
    the final rename is atomic). ``keep_suffix``: end with the destination's extension too."""
    path = Path(path)
    suffix = path.suffix if keep_suffix else ""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")


def commit(temporary: Path, path: str | os.PathLike, durable: bool = False) -> Path:
    """Move a finished ``temporary`` (file or folder) to ``path``, replacing what is there.

    A folder that exists is moved aside first and deleted only after the new one is in place.
    ``durable``: ``fsync`` the file before the rename and the folder after it.
    """
    path = Path(path)
    if durable and temporary.is_file():
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
    previous = None
    if temporary.is_dir() and path.exists():
        previous = path.with_name(f".{path.name}.{os.getpid()}.previous")
        os.replace(path, previous)
    os.replace(temporary, path)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
    if durable:
        _fsync_folder(path.parent)
    return path


def discard(temporary: Path) -> None:
    """Remove an unfinished temporary (file or folder), if any."""
    if temporary.is_dir():
        shutil.rmtree(temporary, ignore_errors=True)
    else:
        temporary.unlink(missing_ok=True)


@contextmanager
def atomic_output(
    path: str | os.PathLike, durable: bool = False, keep_suffix: bool = False
) -> Iterator[Path]:
    """Yield a temporary path to write; it becomes ``path`` when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path, keep_suffix)
    try:
        yield temporary
        commit(temporary, path, durable=durable)
    finally:
        discard(temporary)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_output(path) as temporary:
        temporary.write_text(text)
    return Path(path)


def remove_orphan_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete temporaries that writers killed mid-write left in ``folder``.

    Only those of processes that are no longer running are removed. Returns the removed paths.
    """
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for candidate in sorted(folder.glob(".*")):
        match = _TEMPORARY.match(candidate.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and _process_exists(pid):
            continue
        discard(candidate)
        removed.append(candidate)
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the OS allows opening a folder)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
