"""Draw labelled boxes on dataset images and tile them into one grid image (PIL only)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from edgekd.atomic import atomic_output
from edgekd.data.images import load_rgb
from edgekd.data.records import Dataset, ImageRecord, LabeledObject
from edgekd.errors import EdgeKDError

CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "Car": (0, 200, 255),
    "Van": (0, 110, 255),
    "Truck": (140, 90, 255),
    "Pedestrian": (255, 60, 60),
    "Person_sitting": (255, 130, 170),
    "Cyclist": (255, 205, 0),
    "Tram": (170, 255, 90),
    "Misc": (200, 200, 200),
}
DONTCARE_COLOUR = (150, 150, 150)
MAX_GRID_WIDTH = 2560
GRID_FORMATS: dict[str, str] = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def class_colour(name: str) -> tuple[int, int, int]:
    """A fixed colour per class; classes without one get a stable colour derived from their name."""
    if name in CLASS_COLOURS:
        return CLASS_COLOURS[name]
    digest = hashlib.md5(name.encode()).digest()
    return (80 + digest[0] % 176, 80 + digest[1] % 176, 80 + digest[2] % 176)


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box: tuple[float, ...], colour, width: int, dash: float) -> None:
    x0, y0, x1, y1 = box
    for (ax, ay), (bx, by) in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = max(abs(bx - ax), abs(by - ay))
        steps = max(1, int(length // (2 * dash)))
        for i in range(steps + 1):
            t0, t1 = min(1.0, 2 * i * dash / max(length, 1e-6)), min(1.0, (2 * i + 1) * dash / max(length, 1e-6))
            if t0 >= 1.0:
                break
            draw.line(
                [(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)],
                fill=colour,
                width=width,
            )


def draw_objects(image: Image.Image, objects: list[LabeledObject], scale: float = 1.0) -> Image.Image:
    """A copy of `image` (already resized by `scale`) with every object's box and type drawn on it."""
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=max(9, int(round(13 * max(scale, 0.6)))))
    width = max(1, int(round(2 * scale)))
    for obj in sorted(objects, key=lambda o: o.type != "DontCare"):  # DontCare first, real objects on top
        box = tuple(v * scale for v in obj.bbox)
        if obj.type == "DontCare":
            _dashed_rectangle(draw, box, DONTCARE_COLOUR, max(1, width - 1), 4 * max(scale, 0.5))
            continue
        colour = class_colour(obj.type)
        draw.rectangle(box, outline=colour, width=width)
        text = obj.type if obj.score is None else f"{obj.type} {obj.score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tx, ty = box[0], max(0.0, box[1] - (bottom - top) - 3)
        draw.rectangle((tx, ty, tx + right - left + 3, ty + bottom - top + 3), fill=colour)
        draw.text((tx + 1 - left, ty + 1 - top), text, fill=(0, 0, 0), font=font)
    return out


def pick_records(dataset: Dataset, n: int, seed: int | None) -> list[ImageRecord]:
    """The first n records, or n drawn at random (without replacement) when a seed is given."""
    if n < 1:
        raise EdgeKDError(f"--n: must be >= 1, got {n}")
    if not dataset.records:
        raise EdgeKDError(f"{dataset.root}: split {dataset.split!r} holds no images")
    n = min(n, len(dataset.records))
    if seed is None:
        return dataset.records[:n]
    order = np.random.default_rng(seed).permutation(len(dataset.records))[:n]
    return [dataset.records[i] for i in sorted(order)]


def draw_grid(records: list[ImageRecord], columns: int = 2, max_width: int = MAX_GRID_WIDTH) -> Image.Image:
    """Tile the records' images with their boxes drawn, `columns` per row, each captioned with its id."""
    if columns < 1:
        raise EdgeKDError(f"--columns: must be >= 1, got {columns}")
    columns = min(columns, len(records))
    tile_w = max(r.width for r in records)
    tile_h = max(r.height for r in records)
    scale = min(1.0, max_width / (columns * tile_w))
    cell_w, cell_h = int(round(tile_w * scale)), int(round(tile_h * scale))
    caption = 16
    rows = (len(records) + columns - 1) // columns
    grid = Image.new("RGB", (columns * cell_w, rows * (cell_h + caption)), (25, 25, 25))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=12)
    for i, record in enumerate(records):
        image = load_rgb(record.image_path)
        size = (max(1, int(round(image.width * scale))), max(1, int(round(image.height * scale))))
        tile = draw_objects(image.resize(size, Image.BILINEAR), record.objects, scale)
        x, y = (i % columns) * cell_w, (i // columns) * (cell_h + caption)
        grid.paste(tile, (x, y + caption))
        draw.text((x + 4, y + 2), f"{record.image_id}  ({len(record.objects)} labels)", fill=(230, 230, 230), font=font)
    return grid


def save_grid(dataset: Dataset, out_path: str | Path, n: int = 8, seed: int | None = None, columns: int = 2) -> Path:
    """Draw n images of `dataset` with their labels into one grid image at `out_path` (PNG or JPEG), written
    atomically: a failed write leaves no file."""
    out_path = Path(out_path)
    image_format = GRID_FORMATS.get(out_path.suffix.lower())
    if image_format is None:
        raise EdgeKDError(f"-o {out_path}: the grid is written as .png or .jpg")
    if out_path.is_dir():
        raise EdgeKDError(f"-o {out_path}: is a folder; give the grid's file name")
    grid = draw_grid(pick_records(dataset, n, seed), columns)
    with atomic_output(out_path) as temporary:
        grid.save(temporary, format=image_format)
    return out_path
