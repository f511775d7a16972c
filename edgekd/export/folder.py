"""The output folder of `edgekd export`, replaced as a whole.

An export writes its whole set of files (models, metadata, parity report, caches) into a hidden sibling folder
and swaps it in at the end. So a folder never mixes two exports (say a stale model_int8.onnx from an earlier
export beside a new model.onnx), and a failed export (full disk, Ctrl-C, bad input) leaves the folder as it was.
A folder holding anything but export files (a checkpoint, notes) is refused rather than replaced.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import tempfile
from pathlib import Path

from edgekd.atomic import current_umask, os_error_reason
from edgekd.errors import EdgeKDError

EXPORT_FILES: tuple[str, ...] = (
    "model*.onnx",
    "model*.engine",
    "model*.json",
    "model*.rejected",
    "parity.json",
    "parity.md",
    "layerwise.md",  # --layerwise after a failed engine gate
    "layerwise.json",
    "int8_search.png",
    "timing.cache",
    "calibration.cache",
    ".*.tmp",  # an atomic write interrupted by a crash
)
"""Name patterns of the files an export writes: what a folder may hold to be replaced by a new export."""

KEPT_CACHES: tuple[str, ...] = ("timing.cache",)
"""Carried over into the new export: TensorRT's timing cache depends on the GPU and TensorRT version only (the
INT8 calibration cache belongs to one model and calibration set, so it is rebuilt)."""


def foreign_entries(folder: Path) -> list[Path]:
    """Entries of `folder` that an export does not write (sub-folders included), sorted."""
    return sorted(
        entry
        for entry in folder.iterdir()
        if entry.is_dir() or not any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in EXPORT_FILES)
    )


class ExportFolder:
    """`work`: the hidden sibling folder an export writes into; `commit()` swaps it in as `final`, `discard()`
    deletes it (a no-op after `commit`)."""

    def __init__(self, final: Path, option: str = "-o") -> None:
        final = Path(final)
        for parent in final.parents:
            if parent.exists() and not parent.is_dir():
                raise EdgeKDError(f"{option} {final}: is under {parent}, which is a file; give a folder")
        if final.exists() and not final.is_dir():
            raise EdgeKDError(f"{option} {final}: is a file; give a folder")
        self.previous = 0
        if final.is_dir():
            foreign = foreign_entries(final)
            if foreign:
                kind = "folder" if foreign[0].is_dir() else "file"
                raise EdgeKDError(
                    f"{option} {final}: holds {foreign[0].name}, a {kind} that is not part of an edgekd export; an "
                    "export replaces the whole folder, so give an empty folder or one that holds only an export"
                )
            self.previous = sum(1 for _ in final.iterdir())
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            self.work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".export.tmp", dir=final.parent))
            os.chmod(self.work, 0o777 & ~current_umask())  # mkdtemp creates 0700; give a folder's usual permissions
        except OSError as error:
            raise EdgeKDError(f"{option} {final}: cannot write in {final.parent}: {os_error_reason(error)}") from None
        self.final = final
        self.option = option
        self._committed = False
        try:
            for name in KEPT_CACHES:
                if (final / name).is_file():
                    shutil.copy2(final / name, self.work / name)
        except OSError as error:
            self.discard()
            raise EdgeKDError(f"{option} {final}: cannot copy its {name}: {os_error_reason(error)}") from None

    def final_path(self, path: Path) -> Path:
        """Where a file written under `work` will be once committed."""
        return self.final / Path(path).relative_to(self.work)

    def commit(self) -> None:
        """Swap the new export in: the previous folder is renamed aside, the new one renamed into its place, then
        the previous one deleted (restored if the swap fails)."""
        old = self.work.with_name(self.work.name + ".old")
        moved = False
        try:
            if self.final.exists():
                os.rename(self.final, old)
                moved = True
            os.rename(self.work, self.final)
        except OSError as error:
            if moved:
                os.rename(old, self.final)
            raise EdgeKDError(
                f"{self.option} {self.final}: cannot replace the folder: {os_error_reason(error)}"
            ) from None
        self._committed = True
        if moved:
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        if not self._committed:
            shutil.rmtree(self.work, ignore_errors=True)
