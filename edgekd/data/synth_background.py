"""Background of a synthetic scene: sky, distant skyline, the ground plane (road, lane markings, kerbs,
sidewalks, verges) shaded per pixel through the camera, building facades with windows, and ground shadows.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from edgekd.data.synth_canvas import Colour, mix, scaled
from edgekd.data.synth_geometry import Camera, bev_rectangle
from edgekd.data.synth_layout import BuildingSpec, RoadSpec, Scene

LINE_HALF_WIDTH = 0.075  # m, KITTI-area lane markings are 0.12-0.15 m wide
DASH_PERIOD, DASH_LENGTH = 9.0, 3.0


def _noise(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """Smooth value noise (zero mean, unit-ish std): random values on a coarse grid, bilinearly upsampled."""
    h, w = shape
    coarse = rng.standard_normal((max(2, h // cell + 2), max(2, w // cell + 2))).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.BILINEAR))


def _sky(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """An image-sized sky: vertical gradient and soft clouds, computed at 1/4 scale (it is smooth) and upsampled.

    Rows below the horizon are repainted by the ground.
    """
    cam = scene.camera
    h, w = max(2, cam.height // 4), max(2, cam.width // 4)
    rows = np.clip((np.arange(h, dtype=np.float32) + 0.5) * 4 / max(1.0, cam.horizon), 0, 1)[:, None, None]
    top, horizon = (np.asarray(c, dtype=np.float32) for c in scene.sky)
    sky = (1 - rows) * top + rows * horizon
    clouds = np.clip(_noise(rng, (h, w), max(2, w // 12)) * 0.8 + rng.uniform(-0.8, 0.4), 0, 1)[..., None]
    sky = sky + clouds * (horizon * 1.08 - sky) * 0.7
    small = Image.fromarray(np.clip(np.rint(sky), 0, 255).astype(np.uint8), "RGB")
    return small.resize((cam.width, cam.height), Image.BILINEAR)


def _skyline(draw: ImageDraw.ImageDraw, scene: Scene, rng: np.random.Generator) -> None:
    """A distant band of tree tops or roofs above the horizon, faded towards the sky colour."""
    cam = scene.camera
    scale = cam.scale
    base = cam.horizon + 2 * scale
    u, points = 0.0, [(0.0, base)]
    colour_a = mix(rng.choice([60, 90, 120], 3).tolist(), scene.sky[1], rng.uniform(0.35, 0.65))
    colour_b = mix((55, 75, 50), scene.sky[1], rng.uniform(0.3, 0.6))
    while u < cam.width:
        width = rng.uniform(8, 60) * scale
        top = base - rng.uniform(2, 28) * scale * (1.0 if rng.random() < 0.7 else 0.2)
        if rng.random() < 0.5:
            points += [(u, top), (u + width, top)]
        else:
            points += [(u + width / 2, top)]
        u += width
    points += [(cam.width, base)]
    draw.polygon(points, fill=colour_a if rng.random() < 0.5 else colour_b)


class _GroundPainter:
    """Per-pixel ground colours for the rows below the horizon.

    A ground point seen at column u of a row at depth z has road coordinate rel = (u - cx) z / fx - k z^2, which
    is linear in u; so wide regions (road, sidewalks, verges) are found with one searchsorted over rel, and thin
    bands (kerbs, lane markings, zebra stripes) are painted only on the few columns they cover per row, with
    exact fractional coverage of their edge pixels (antialiasing without touching the whole image).
    """

    def __init__(self, scene: Scene, v0: int) -> None:
        cam, road = scene.camera, scene.road
        v = np.arange(v0, cam.height, dtype=np.float64) + 0.5
        self.z = np.minimum(cam.fy * cam.ground_height / np.maximum(v - cam.horizon, 1e-3), 3000.0)
        self.scale = cam.fx / self.z  # pixels per metre across
        self.offset = cam.cx + cam.fx * road.curvature * self.z  # image column (continuous) of rel = 0
        self.width = cam.width
        u = np.arange(cam.width, dtype=np.float32)[None, :] + 0.5
        self.rel = (u - np.float32(cam.cx)) / self.scale[:, None].astype(np.float32) - (
            road.curvature * self.z * self.z
        )[:, None].astype(np.float32)
        self.colour = np.zeros((len(v), cam.width, 3), np.float32)

    def regions(self, bounds: list[float], colours: np.ndarray, texture: np.ndarray, amplitude: np.ndarray) -> None:
        """Fill region i (rel between bounds[i-1] and bounds[i]) with colours[i] * (1 + amplitude[i] * texture)."""
        index = np.searchsorted(np.asarray(bounds, np.float32), self.rel)
        self.colour[:] = colours[index]
        self.colour *= (1.0 + amplitude[index] * texture)[..., None]

    def band(self, lo: float, hi: float, colour: Colour, alpha: np.ndarray | float = 1.0) -> None:
        """Blend `colour` over rel in [lo, hi] with per-row opacity `alpha` (0 rows are skipped)."""
        rows = np.arange(len(self.z))
        alpha = np.broadcast_to(np.asarray(alpha, np.float64), rows.shape)
        a = self.offset + lo * self.scale
        b = self.offset + hi * self.scale
        keep = (alpha > 0) & (b > 0) & (a < self.width)
        if not keep.any():
            return
        rows, a, b, alpha = rows[keep], a[keep], b[keep], alpha[keep]
        span = int(np.ceil((b - a).max())) + 2
        cols = np.floor(a).astype(np.int64)[:, None] + np.arange(span)[None, :]
        cover = np.clip(np.minimum(cols + 1, b[:, None]) - np.maximum(cols, a[:, None]), 0.0, 1.0) * alpha[:, None]
        valid = (cover > 0) & (cols >= 0) & (cols < self.width)
        r = np.broadcast_to(rows[:, None], cols.shape)[valid]
        c = cols[valid]
        w = cover[valid].astype(np.float32)[:, None]
        self.colour[r, c] += w * (np.asarray(colour, np.float32) - self.colour[r, c])


def _ground(scene: Scene, image: Image.Image, rng: np.random.Generator) -> None:
    """Shade every pixel below the horizon from its ground point and paste the result into `image`."""
    cam, road = scene.camera, scene.road
    v0 = int(math.floor(cam.horizon)) + 1
    if v0 >= cam.height:
        return
    g = _GroundPainter(scene, v0)
    shape = g.rel.shape
    texture = _noise(rng, shape, 24) + 0.6 * _noise(rng, shape, 3)
    walk_l, walk_r = (
        edge + sign * (road.kerb + w)
        for edge, sign, w in ((road.left_edge, -1, road.sidewalk[0]), (road.right_edge, 1, road.sidewalk[1]))
    )
    verge = [road.grass if v == "grass" else scaled(road.pavement, 0.92) for v in road.verge]
    colours = np.array([verge[0], road.pavement, road.asphalt, road.pavement, verge[1]], np.float32)
    grain = [0.15 if v == "grass" else 0.05 for v in road.verge]
    amplitude = np.array([grain[0], 0.05, 0.07, 0.05, grain[1]], np.float32)
    g.regions([walk_l, road.left_edge, road.right_edge, walk_r], colours, texture, amplitude)
    kerb = mix(road.pavement, (235, 235, 235), 0.4)
    g.band(road.left_edge - road.kerb, road.left_edge, kerb)
    g.band(road.right_edge, road.right_edge + road.kerb, kerb)
    fade = 0.35 + 0.65 * np.exp(-g.z / 60.0)
    dash = ((g.z + road.dash_phase) % DASH_PERIOD < DASH_LENGTH) * fade
    for b in road.dashed:
        g.band(b - LINE_HALF_WIDTH, b + LINE_HALF_WIDTH, road.line_colour, dash)
    for b in road.solid:
        g.band(b - LINE_HALF_WIDTH, b + LINE_HALF_WIDTH, road.line_colour, fade)
    if road.crosswalk is not None:
        z0, z1 = road.crosswalk
        rows = ((g.z >= z0) & (g.z <= z1)) * 0.85
        for lo in np.arange(math.ceil((road.left_edge + 0.5) / 1.2) * 1.2, road.right_edge - 1.0, 1.2):
            g.band(lo, lo + 0.6, road.line_colour, rows)
    haze = (1.0 - np.exp(-g.z / scene.haze)).astype(np.float32)[:, None, None]
    g.colour += haze * (np.asarray(scene.sky[1], np.float32) - g.colour)
    np.rint(g.colour, out=g.colour)
    image.paste(Image.fromarray(np.clip(g.colour, 0, 255).astype(np.uint8), "RGB"), (0, v0))


def _building(draw: ImageDraw.ImageDraw, cam: Camera, road: RoadSpec, b: BuildingSpec, scene: Scene) -> None:
    """A facade parallel to the road, its end wall towards the camera, and a grid of windows."""
    light = scene.light

    def corners(rel: np.ndarray, z: np.ndarray, up: np.ndarray) -> np.ndarray:
        rel, z, up = np.broadcast_arrays(np.asarray(rel, float), np.asarray(z, float), np.asarray(up, float))
        x = rel + road.curvature * z * z
        return cam.project(np.stack([x.ravel(), (cam.ground_y(z) - up).ravel(), z.ravel()], axis=1))

    haze = 1.0 - math.exp(-b.z0 / scene.haze)
    facade = mix(light.shade(b.colour, np.array([-b.side, 0.0, 0.0])), scene.sky[1], haze)
    zs, ups = np.array([b.z0, b.z0, b.z1, b.z1]), np.array([0.0, b.height, b.height, 0.0])
    draw.polygon(corners(b.rel, zs, ups).ravel().tolist(), fill=facade)
    if b.z0 > 2.0:
        end = mix(light.shade(b.colour, np.array([0.0, 0.0, -1.0])), scene.sky[1], haze)
        rels = np.array([b.rel, b.rel, b.rel + b.side * 12.0, b.rel + b.side * 12.0])
        draw.polygon(corners(rels, b.z0, ups).ravel().tolist(), fill=end)
    # Windows narrower than ~a pixel are left out: the facade colour is what the camera would see.
    z_left = b.z0 + b.bay * 0.5 + np.arange(max(0, int((b.z1 - b.z0 - 1.2 - b.bay * 0.5) // b.bay) + 1)) * b.bay
    z_left = z_left[(z_left + 1.2 < b.z1) & (cam.fx * 1.2 * abs(b.rel) / np.maximum(z_left, 1.0) ** 2 >= 0.8)]
    floors = np.arange(1.0, b.height - 1.6, b.floor)
    if z_left.size == 0 or floors.size == 0:
        return
    window = mix(b.window, scene.sky[1], haze)
    zz, yy = np.meshgrid(z_left, floors, indexing="ij")
    quad_z = np.stack([zz, zz, zz + 1.2, zz + 1.2], axis=-1)
    quad_up = np.stack([yy, yy + 1.5, yy + 1.5, yy], axis=-1)
    pixels = corners(b.rel, quad_z, quad_up).reshape(-1, 8)
    for quad in pixels.tolist():
        draw.polygon(quad, fill=window)


def _ground_polygon(cam: Camera, pts_xz: np.ndarray) -> np.ndarray | None:
    pts = np.column_stack([pts_xz[:, 0], cam.ground_y(pts_xz[:, 1]), pts_xz[:, 1]])
    if (pts[:, 2] < 1.0).any():
        return None
    return cam.project(pts)


def _shadows(scene: Scene, rng: np.random.Generator, patches_mean: float) -> Image.Image:
    """A mask (L) of ground shadows: under and beside objects and trees, and large patches on the road."""
    cam, light, road = scene.camera, scene.light, scene.road
    mask = Image.new("L", (cam.width, cam.height), 0)
    draw = ImageDraw.Draw(mask)
    sun = np.array(light.sun)
    cast = -np.array([sun[0], sun[2]]) / max(0.25, -sun[1])  # ground offset per metre of height

    def shadow(x: float, z: float, length: float, width: float, ry: float, height: float, level: int) -> None:
        foot = bev_rectangle(x, z, length, width, ry)
        top = foot + cast * height
        for poly in (foot, top, *(np.array([foot[i], foot[(i + 1) % 4], top[(i + 1) % 4], top[i]]) for i in range(4))):
            img = _ground_polygon(cam, poly)
            if img is not None:
                draw.polygon(img.ravel().tolist(), fill=level)

    for obj in scene.objects:
        h, w, length = obj.dims
        if obj.type in ("Car", "Van"):
            shadow(obj.x, obj.z, length * 0.98, w * 0.98, obj.ry, h * 0.8, 255)
        else:
            shadow(obj.x, obj.z, 0.5, 0.4, obj.ry, h, 200)
    for item in scene.clutter:
        if item.kind == "tree":
            crown = item.size[2]
            offset = cast * (item.size[0] + crown)
            t = np.linspace(0, 2 * math.pi, 12, endpoint=False)
            ring = np.column_stack([item.x + offset[0] + crown * np.cos(t), item.z + offset[1] + crown * np.sin(t)])
            img = _ground_polygon(cam, ring)
            if img is not None:
                draw.polygon(img.ravel().tolist(), fill=170)
        elif item.kind in ("pole", "sign", "box", "bollard"):
            shadow(item.x, item.z, 0.3, 0.3, 0.0, item.size[0], 200)
    # Large patches from trees and buildings off to the side; fewer when overcast.
    for _ in range(rng.poisson(patches_mean * min(1.0, light.diffuse / 0.5))):
        z = rng.uniform(3, 60)
        rel = rng.uniform(road.left_edge - 3, road.right_edge + 3)
        n = int(rng.integers(5, 9))
        t = np.sort(rng.uniform(0, 2 * math.pi, n))
        r = rng.uniform(1.5, 7) * rng.uniform(0.6, 1.0, n)
        ring = np.column_stack([road.x_at(rel, z) + r * np.cos(t) * rng.uniform(1, 3), z + r * np.sin(t)])
        img = _ground_polygon(cam, ring)
        if img is not None:
            draw.polygon(img.ravel().tolist(), fill=int(rng.integers(120, 220)))
    box = mask.getbbox()
    if box is None:
        return mask
    pad = int(math.ceil(3 * cam.scale))
    box = (max(0, box[0] - pad), max(0, box[1] - pad), min(cam.width, box[2] + pad), min(cam.height, box[3] + pad))
    mask.paste(mask.crop(box).filter(ImageFilter.BoxBlur(radius=1.2 * cam.scale)), box[:2])
    return mask


def paint_background(scene: Scene, rng: np.random.Generator, shadow_patches_mean: float) -> Image.Image:
    """Sky, skyline, ground, buildings and ground shadows as an RGB image ready for the objects."""
    cam = scene.camera
    image = _sky(scene, rng)
    _ground(scene, image, rng)
    draw = ImageDraw.Draw(image)
    _skyline(draw, scene, rng)
    for b in sorted(scene.buildings, key=lambda b: -b.z0):
        _building(draw, cam, scene.road, b, scene)
    mask = _shadows(scene, rng, shadow_patches_mean)
    strength = 0.55 * scene.light.diffuse / (scene.light.diffuse + scene.light.ambient) + 0.12
    dark = image.point([int(round(v * (1.0 - strength))) for v in range(256)] * 3)
    return Image.composite(dark, image, mask)
