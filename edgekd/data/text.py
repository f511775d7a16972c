"""The text files of a dataset (label_2, ImageSets, calib, COCO JSON) read as UTF-8, with or without a byte-order
mark; a file that is not UTF-8 is one error naming file:line and the byte at fault."""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import EdgeKDError


def read_text(path: str | Path, what: str) -> str:
    """The text of `path`; `what` ("label file", "COCO file", ...) names it when it does not exist."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise EdgeKDError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise EdgeKDError(f"{path}: is a folder, expected a {what}") from None
    except OSError as error:
        raise EdgeKDError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line_start = error.object.rfind(b"\n", 0, error.start) + 1
        line = error.object.count(b"\n", 0, error.start) + 1
        column = error.start - line_start + 1
        raise EdgeKDError(
            f"{path}:{line}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at column {column}); "
            "save the file as UTF-8"
        ) from None
