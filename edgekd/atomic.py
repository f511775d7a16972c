"""Atomic file writes and output folders: a temporary file in the target's folder, then a rename, so a reader or a
crash never sees half a file, and a failed write (full disk, read-only folder) leaves nothing behind.
numpy- and torch-free (the deploy paths use it)."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgekd.errors import EdgeKDError


def os_error_reason(error: OSError) -> str:
    """A short reason for a failed file operation (full disk and permissions spelt out)."""
    if error.errno == errno.ENOSPC:
        return "no space left on the device"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied (read-only folder?)"
    return error.strerror or str(error)


def output_dir(path: Path, option: str = "-o") -> Path:
    """Create the output folder `path` (and its parents) or raise one clear error: it is a file, a parent is a
    file, or it cannot be written to. Returns the path."""
    path = Path(path)
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == path else f"is under {parent}, which is a file"
            raise EdgeKDError(f"{option} {path}: {where}; give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise EdgeKDError(f"{option} {path}: cannot create the folder: {os_error_reason(error)}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise EdgeKDError(f"{option} {path}: the folder is not writable")
    return path


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` for a writer that needs a file name (torch.save, savefig, PIL);
    on success rename it onto `path`, on any failure delete it. An OSError becomes one EdgeKDError naming `path`."""
    path = Path(path)
    if path.parent.exists() and not path.parent.is_dir():
        raise EdgeKDError(f"cannot write {path}: {path.parent} is a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
    except OSError as error:
        raise EdgeKDError(f"cannot write {path}: {os_error_reason(error)}") from None
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise EdgeKDError(f"cannot write {path}: {os_error_reason(error)}") from None
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see a half-written file."""
    with atomic_output(path) as temporary:
        temporary.write_bytes(data)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
