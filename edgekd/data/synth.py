"""Built-in synthetic KITTI-like driving scenes, written as real KITTI files.

`render_scene` draws one scene (pinhole camera with a KITTI-like P2, road plane, cars/vans/pedestrians/cyclists
as projected 3D parts painted far to near, clutter, light, blur, noise) and labels it the KITTI way: amodal 2D
box clipped to the image, truncated = 1 - clipped/full box area, occluded level from the fraction of the object's
silhouette hidden by nearer things, alpha = rotation_y - arctan2(x, z); far or tiny objects become DontCare.
`render_dataset` writes image_2/, label_2/, calib/ and ImageSets/ for many scenes, in parallel, deterministically:
every scene depends only on (seed, index), so the number of workers never changes the bytes written.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from edgekd.atomic import output_dir
from edgekd.data.kitti import write_calib, write_label_file
from edgekd.data.records import LabeledObject
from edgekd.data.synth_background import paint_background
from edgekd.data.synth_canvas import OCCLUDER_ID, Canvas, Drawing, Light
from edgekd.data.synth_clutter import clutter_drawing
from edgekd.data.synth_config import SynthConfig
from edgekd.data.synth_effects import camera_effects
from edgekd.data.synth_geometry import Camera, Pose, observation_angle
from edgekd.data.synth_layout import ObjectSpec, make_camera, sample_scene
from edgekd.data.synth_objects import car_drawing, cyclist_drawing, pedestrian_drawing
from edgekd.errors import EdgeKDError
from edgekd.progress import make_progress, progress_console

__all__ = ["SynthConfig", "SynthSummary", "render_dataset", "render_scene"]

OUTPUT_DIRS = ("image_2", "label_2", "calib", "ImageSets")
CONFIG_NAME = "synth_config.json"
STAGING_PREFIX = ".synth-partial-"
MIN_SIZE = (64, 24)
MAX_IMAGES = 1_000_000  # six-digit ids, as KITTI
PNG_STRATEGY = 2  # zlib Z_HUFFMAN_ONLY: sensor noise defeats LZ77 matching; ~30 % less time, ~5 % smaller here


def _object_drawing(scene_camera: Camera, spec: ObjectSpec, light: Light) -> Drawing:
    pose = Pose(spec.x, spec.y, spec.z, spec.ry)
    if spec.type in ("Car", "Van"):
        return car_drawing(scene_camera, pose, spec.dims, spec.look, light)
    if spec.type == "Pedestrian":
        return pedestrian_drawing(scene_camera, pose, spec.dims[0], spec.look, light)
    return cyclist_drawing(scene_camera, pose, spec.dims[0], spec.look, light)


def _occlusion_level(hidden: float, levels: tuple[float, float, float]) -> int:
    """KITTI occluded: 0 fully visible, 1 partly, 2 largely occluded, 3 (almost) hidden ("unknown")."""
    return int(sum(hidden >= t for t in levels))


def _dontcare_regions(boxes: list[list[float]], merge: float, width: int, height: int) -> list[LabeledObject]:
    """Merge boxes closer than `merge` px into regions (repeatedly, until none touch) -> DontCare objects."""
    regions = [list(b) for b in boxes]
    merged = True
    while merged:
        merged = False
        for i in range(len(regions)):
            for j in range(i + 1, len(regions)):
                a, b = regions[i], regions[j]
                if a[0] - merge <= b[2] and b[0] - merge <= a[2] and a[1] - merge <= b[3] and b[1] - merge <= a[3]:
                    regions[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del regions[j]
                    merged = True
                    break
            if merged:
                break
    out = []
    for x0, y0, x1, y1 in sorted(regions):
        box = (_r2(max(0.0, x0)), _r2(max(0.0, y0)), _r2(min(width - 1.0, x1)), _r2(min(height - 1.0, y1)))
        if box[2] - box[0] >= 1.0 and box[3] - box[1] >= 1.0:
            out.append(LabeledObject(type="DontCare", bbox=box, truncated=-1.0, occluded=-1))
    return out


def _r2(value: float) -> float:
    """Rounded to the 2 decimals a label file keeps, so in-memory labels equal what is written."""
    return round(float(value), 2)


def _label(spec: ObjectSpec, box: tuple[float, ...], truncated: float, occluded: int) -> LabeledObject:
    return LabeledObject(
        type=spec.type,
        bbox=tuple(_r2(v) for v in box),
        truncated=_r2(truncated),
        occluded=occluded,
        alpha=_r2(observation_angle(spec.ry, spec.x, spec.z)),
        dimensions=tuple(_r2(v) for v in spec.dims),
        location=(_r2(spec.x), _r2(spec.y), _r2(spec.z)),
        rotation_y=_r2(spec.ry),
    )


def _labels(
    objects: list[tuple[ObjectSpec, Drawing]], canvas: Canvas, cam: Camera, cfg: SynthConfig
) -> list[LabeledObject]:
    """KITTI labels of the painted objects (ids 1..n in `objects` order), DontCare regions last."""
    visible = canvas.visible_pixels()
    width, height = cam.width, cam.height
    min_height = cfg.min_label_height_px * cam.scale
    labelled: list[tuple[float, LabeledObject]] = []
    dontcare: list[list[float]] = []
    pad = cfg.dontcare_pad_px * cam.scale
    for object_id, (spec, drawing) in enumerate(objects, start=1):
        if not drawing.has_extent():
            continue
        x0, y0, x1, y1 = drawing.extent
        box = (max(0.0, x0), max(0.0, y0), min(width - 1.0, x1), min(height - 1.0, y1))
        if box[2] <= box[0] or box[3] <= box[1]:
            continue
        silhouette = canvas.silhouette_pixels(drawing)
        if silhouette == 0:
            continue
        shown = visible[object_id] / silhouette
        if shown == 0.0:
            continue
        hidden = shown < cfg.min_visible_fraction
        if hidden or spec.far or box[3] - box[1] < min_height or box[2] - box[0] < 0.4 * min_height:
            dontcare.append([box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad])
            continue
        full_area = (x1 - x0) * (y1 - y0)
        truncated = min(1.0, max(0.0, 1.0 - (box[2] - box[0]) * (box[3] - box[1]) / full_area))
        occluded = _occlusion_level(1.0 - shown, cfg.occlusion_levels)
        labelled.append((spec.z, _label(spec, box, truncated, occluded)))
    labelled.sort(key=lambda item: item[0])
    merge = cfg.dontcare_merge_px * cam.scale
    return [obj for _, obj in labelled] + _dontcare_regions(dontcare, merge, width, height)


def render_scene(
    index: int, seed: int, size: tuple[int, int] = (1242, 375), config: SynthConfig | None = None
) -> tuple[np.ndarray, list[LabeledObject], np.ndarray]:
    """One synthetic scene: (uint8 HxWx3 image, KITTI labels, 3x4 P2). Depends only on (seed, index, size, config)."""
    cfg = config or SynthConfig()
    _check_size(size)
    if index < 0 or seed < 0:
        raise EdgeKDError(f"seed and image index must be >= 0, got seed {seed}, index {index}")
    rng = np.random.default_rng([seed, index])
    cam = make_camera(size, cfg, rng)
    scene = sample_scene(rng, cam, cfg)
    canvas = Canvas(paint_background(scene, rng, cfg.road_shadows_mean))
    items = [(math.hypot(o.x, o.z), 0, i) for i, o in enumerate(scene.objects)]
    items += [(math.hypot(c.x, c.z), 1, i) for i, c in enumerate(scene.clutter)]
    objects: list[tuple[ObjectSpec, Drawing] | None] = [None] * len(scene.objects)
    for _, is_clutter, i in sorted(items, reverse=True):
        if is_clutter:
            canvas.paint(clutter_drawing(cam, scene.clutter[i], scene.light), OCCLUDER_ID)
        else:
            drawing = _object_drawing(cam, scene.objects[i], scene.light)
            canvas.paint(drawing, i + 1)
            objects[i] = (scene.objects[i], drawing)
    labels = _labels([o for o in objects if o is not None], canvas, cam, cfg)
    return camera_effects(canvas.image, rng, cfg), labels, cam.P2


def _check_size(size: tuple[int, int]) -> None:
    if len(size) != 2 or size[0] < MIN_SIZE[0] or size[1] < MIN_SIZE[1]:
        raise EdgeKDError(f"--size: images must be at least {MIN_SIZE[0]}x{MIN_SIZE[1]}, got {size}")


def image_id(index: int) -> str:
    return f"{index:06d}"


def _render_and_write(args: tuple[int, int, tuple[int, int], SynthConfig, str]) -> dict[str, int]:
    """Worker: render scene `index`, write its image, labels and calib; return its class counts."""
    index, seed, size, cfg, out_dir = args
    image, labels, P2 = render_scene(index, seed, size, cfg)
    root = Path(out_dir)
    name = image_id(index)
    Image.fromarray(image).save(
        root / "image_2" / f"{name}.png",
        format="PNG",
        compress_level=cfg.png_compress_level,
        compress_type=PNG_STRATEGY,
    )
    write_label_file(root / "label_2" / f"{name}.txt", labels)
    write_calib(root / "calib" / f"{name}.txt", P2)
    return dict(Counter(obj.type for obj in labels))


@dataclass
class SynthSummary:
    """What render_dataset wrote."""

    out_dir: Path
    n_train: int
    n_val: int
    seconds: float
    counts: dict[str, int]  # labelled objects per type over all images
    n_test: int = 0


def _check_existing(out: Path, overwrite: bool) -> None:
    existing = [d for d in OUTPUT_DIRS if (out / d).exists() and (not (out / d).is_dir() or any((out / d).iterdir()))]
    if existing and not overwrite:
        raise EdgeKDError(f"{out}: already holds {', '.join(existing)}; pass --overwrite to replace them")


@contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A hidden folder in `out` that receives the whole dataset; on success its folders and synth_config.json
    replace those of `out` (the old ones are removed only then), on any failure it is deleted, so `out` never
    holds a half-rendered dataset. An OSError becomes one EdgeKDError naming `out`. Folders left by a killed
    earlier run are removed first."""
    for stale in out.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
    except OSError as error:
        raise EdgeKDError(f"{out}: cannot write the dataset: {error.strerror or error}") from None
    try:
        for d in OUTPUT_DIRS:
            (staging / d).mkdir()
        yield staging
        for name in (*OUTPUT_DIRS, CONFIG_NAME):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            os.replace(staging / name, target)
    except OSError as error:
        reason = "no space left on the device" if error.errno == errno.ENOSPC else error.strerror or str(error)
        raise EdgeKDError(f"{out}: cannot write the dataset: {reason}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def render_dataset(
    out_dir: str | Path,
    n_train: int,
    n_val: int,
    size: tuple[int, int] = (1242, 375),
    seed: int = 0,
    workers: int = 1,
    config: SynthConfig | None = None,
    progress: bool = True,
    overwrite: bool = False,
    n_test: int = 0,
) -> SynthSummary:
    """Render n_train + n_val + n_test scenes into a KITTI directory (ids 000000..; ImageSets/train.txt lists the
    first n_train, val.txt the next n_val, trainval.txt both, test.txt the n_test after them: a held-out split from
    the same generator, every scene drawn from its own id). Same arguments -> byte-identical files, for any
    `workers`; adding test images leaves the train and val files unchanged.

    `out_dir` is created if needed; other files in it are left alone. When it already holds a non-empty image_2/,
    label_2/, calib/ or ImageSets/ this is an error unless `overwrite`, which replaces those folders (and
    synth_config.json) once the new dataset is complete. Rendering goes to a hidden folder in `out_dir`, so a
    failure (full disk, Ctrl-C) leaves `out_dir` as it was.
    """
    if n_train < 0 or n_val < 0 or n_test < 0 or n_train + n_val + n_test == 0:
        raise EdgeKDError(f"--train/--val/--test: need a positive number of images, got {n_train} + {n_val} + {n_test}")
    if n_train + n_val + n_test > MAX_IMAGES:
        raise EdgeKDError(f"--train/--val/--test: at most {MAX_IMAGES} images (six-digit ids)")
    if workers < 1:
        raise EdgeKDError(f"--workers: must be >= 1, got {workers}")
    if seed < 0:
        raise EdgeKDError(f"--seed: must be >= 0, got {seed}")
    _check_size(size)
    cfg = config or SynthConfig()
    out = output_dir(Path(out_dir), "output folder")
    _check_existing(out, overwrite)
    with _staging(out) as staging:
        return _render_into(staging, out, (n_train, n_val, n_test), size, seed, workers, cfg, progress)


def _render_into(
    staging: Path,
    out: Path,
    counts_per_split: tuple[int, int, int],
    size: tuple[int, int],
    seed: int,
    workers: int,
    cfg: SynthConfig,
    progress: bool,
) -> SynthSummary:
    """Render every scene, the split files and synth_config.json into `staging` (the summary names `out`)."""
    n_train, n_val, n_test = counts_per_split
    total = n_train + n_val + n_test
    jobs = [(i, seed, tuple(size), cfg, str(staging)) for i in range(total)]
    counts: Counter[str] = Counter()
    start = time.perf_counter()
    with _progress_bar(progress, f"rendering {total} scenes", total) as advance:
        if workers == 1:
            for result in map(_render_and_write, jobs):
                counts.update(result)
                advance()
        else:
            # spawn: workers start clean (no inherited torch/OpenMP state); the worker is a top-level function.
            with multiprocessing.get_context("spawn").Pool(min(workers, total)) as pool:
                for result in pool.imap(_render_and_write, jobs, chunksize=2):
                    counts.update(result)
                    advance()
    ids = [image_id(i) for i in range(total)]
    held_out = n_train + n_val
    splits = {"train": ids[:n_train], "val": ids[n_train:held_out], "trainval": ids[:held_out], "test": ids[held_out:]}
    for name, split in splits.items():
        if split:
            (staging / "ImageSets" / f"{name}.txt").write_text("".join(f"{i}\n" for i in split))
    meta = {"generator": "edgekd.data.synth", "seed": seed, "size": list(size), "config": dataclasses.asdict(cfg)}
    (staging / CONFIG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return SynthSummary(out, n_train, n_val, time.perf_counter() - start, dict(sorted(counts.items())), n_test)


@contextmanager
def _progress_bar(enabled: bool, description: str, total: int) -> Iterator[Callable[[], None]]:
    """Progress on stderr (a rich bar on a terminal, periodic plain lines in a log), or nothing; yields the function
    that advances it by one."""
    if not enabled:
        yield lambda: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with make_progress(progress_console(), columns) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)
