"""2D drawing for the synthetic scenes: primitive lists, face shading, and a canvas with an object-id buffer.

Each scene item (object or clutter) is turned into a `Drawing` (projected polygons, ellipses, thick lines).
The canvas paints drawings far to near (painter's algorithm) into the RGB image and, for solid primitives,
into an id buffer; counting each id's pixels afterwards gives every object's visible area after occlusion.
PIL's ImageDraw does the rasterising (fast C, deterministic); no antialiasing, the camera blur softens edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

Colour = tuple[int, int, int]
OCCLUDER_ID = 255  # id-buffer value of clutter (poles, trees, ...): occludes objects, is not one


def _byte(value: float) -> int:
    return min(255, max(0, int(round(value))))


def mix(a: Colour, b: Colour, t: float) -> Colour:
    """Linear blend a -> b by t, rounded to a PIL colour."""
    return (_byte(a[0] + t * (b[0] - a[0])), _byte(a[1] + t * (b[1] - a[1])), _byte(a[2] + t * (b[2] - a[2])))


def scaled(colour: Colour, factor: float) -> Colour:
    return (_byte(colour[0] * factor), _byte(colour[1] * factor), _byte(colour[2] * factor))


@dataclass(frozen=True)
class Light:
    """Sun + sky lighting: shade = ambient + diffuse * max(0, n . sun) + sky * max(0, n . up) (Lambert)."""

    sun: tuple[float, float, float]  # unit vector towards the sun, camera coordinates (y down)
    ambient: float
    diffuse: float
    sky: float

    def factor(self, normal: np.ndarray) -> float:
        n0, n1, n2 = float(normal[0]), float(normal[1]), float(normal[2])
        lambert = max(0.0, n0 * self.sun[0] + n1 * self.sun[1] + n2 * self.sun[2])
        up = max(0.0, -n1)
        return self.ambient + self.diffuse * lambert + self.sky * up

    def shade(self, colour: Colour, normal: np.ndarray) -> Colour:
        return scaled(colour, self.factor(normal))


@dataclass
class Drawing:
    """Primitives of one scene item in image coordinates; `solid` ones form its silhouette."""

    prims: list[tuple] = field(default_factory=list)
    extent: list[float] = field(default_factory=lambda: [np.inf, np.inf, -np.inf, -np.inf])

    def _grow(self, x0: float, y0: float, x1: float, y1: float) -> None:
        e = self.extent
        e[0], e[1], e[2], e[3] = min(e[0], x0), min(e[1], y0), max(e[2], x1), max(e[3], y1)

    def polygon(self, points: np.ndarray, colour: Colour, solid: bool = True) -> None:
        """A filled polygon from (N, 2) pixel coordinates."""
        if solid:
            lo, hi = points.min(axis=0), points.max(axis=0)
            self._grow(lo[0], lo[1], hi[0], hi[1])
        self.prims.append(("polygon", points.ravel().tolist(), colour, solid))

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, colour: Colour, solid: bool = True) -> None:
        box = [cx - rx, cy - ry, cx + rx, cy + ry]
        if solid:
            self._grow(*box)
        self.prims.append(("ellipse", box, colour, solid))

    def chord(self, cx: float, cy: float, r: float, start: float, end: float, colour: Colour) -> None:
        """A circle segment (degrees, PIL convention); decoration only, inside a solid ellipse."""
        self.prims.append(("chord", ([cx - r, cy - r, cx + r, cy + r], start, end), colour, False))

    def line(self, points: np.ndarray, width_px: float, colour: Colour, solid: bool = True) -> None:
        """A polyline `width_px` wide (at least 1 px) with rounded joints."""
        width = max(1, int(round(width_px)))
        if solid:
            half = width / 2.0
            self._grow(
                points[:, 0].min() - half,
                points[:, 1].min() - half,
                points[:, 0].max() + half,
                points[:, 1].max() + half,
            )
        self.prims.append(("line", (points.ravel().tolist(), width), colour, solid))

    def has_extent(self) -> bool:
        return bool(np.isfinite(self.extent).all())


def _draw(draw: ImageDraw.ImageDraw, prim: tuple, fill: int | Colour, offset: tuple[float, float] = (0.0, 0.0)) -> None:
    kind, data, _, _ = prim
    ox, oy = offset
    if kind == "polygon":
        pts = data if offset == (0.0, 0.0) else [v - (ox if i % 2 == 0 else oy) for i, v in enumerate(data)]
        draw.polygon(pts, fill=fill)
    elif kind == "ellipse":
        x0, y0, x1, y1 = data
        draw.ellipse([x0 - ox, y0 - oy, x1 - ox, y1 - oy], fill=fill)
    elif kind == "chord":
        (x0, y0, x1, y1), start, end = data
        draw.chord([x0 - ox, y0 - oy, x1 - ox, y1 - oy], start, end, fill=fill)
    else:
        pts, width = data
        if offset != (0.0, 0.0):
            pts = [v - (ox if i % 2 == 0 else oy) for i, v in enumerate(pts)]
        draw.line(pts, fill=fill, width=width, joint="curve")


class Canvas:
    """An RGB image plus an 8-bit id buffer (0 = background, 1..254 = objects, 255 = occluding clutter)."""

    def __init__(self, image: Image.Image) -> None:
        self.image = image
        self.ids = Image.new("L", image.size, 0)
        self._rgb = ImageDraw.Draw(self.image)
        self._ids = ImageDraw.Draw(self.ids)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size

    def paint(self, drawing: Drawing, item_id: int | None) -> None:
        """Paint a drawing over what is there; solid primitives also write `item_id` into the id buffer."""
        for prim in drawing.prims:
            _draw(self._rgb, prim, prim[2])
            if item_id is not None and prim[3]:
                _draw(self._ids, prim, item_id)

    def visible_pixels(self) -> np.ndarray:
        """Pixel count per id (length 256) in the id buffer."""
        return np.bincount(np.asarray(self.ids).ravel(), minlength=256)

    def silhouette_pixels(self, drawing: Drawing) -> int:
        """Pixels of the drawing's solid primitives inside the image, ignoring anything painted over them."""
        width, height = self.size
        x0, y0 = max(0, int(np.floor(drawing.extent[0]))), max(0, int(np.floor(drawing.extent[1])))
        x1, y1 = min(width, int(np.ceil(drawing.extent[2])) + 1), min(height, int(np.ceil(drawing.extent[3])) + 1)
        if x1 <= x0 or y1 <= y0:
            return 0
        mask = Image.new("L", (x1 - x0, y1 - y0), 0)
        draw = ImageDraw.Draw(mask)
        for prim in drawing.prims:
            if prim[3]:
                _draw(draw, prim, 1, (float(x0), float(y0)))
        return int(np.count_nonzero(np.asarray(mask)))
