"""Roadside clutter that is not an object class: poles and lamps, traffic signs, trees, bushes, bins and
cabinets painted like cars, bollards. They share colours and edges with the objects so that a detector must
learn shapes, and they occlude objects behind them (id-buffer value OCCLUDER_ID).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgekd.data.synth_canvas import Colour, Drawing, Light, mix, scaled
from edgekd.data.synth_geometry import Camera, Pose, prism
from edgekd.data.synth_objects import draw_patch, draw_solid


@dataclass(frozen=True)
class ClutterSpec:
    """One clutter item standing on the ground at (x, z); `size`, `colours` and `extra` depend on `kind`."""

    kind: str  # pole | sign | tree | bush | box | bollard
    x: float
    z: float
    ry: float
    size: tuple[float, ...]
    colours: tuple[Colour, ...]
    extra: tuple[tuple[float, ...], ...] = ()

    def footprint(self) -> tuple[float, float]:
        """(length, width) of the ground footprint, for collision checks."""
        if self.kind == "box":
            return self.size[2], self.size[1]
        if self.kind == "tree":
            return 0.6, 0.6
        if self.kind == "bush":
            return 2 * self.size[0], 2 * self.size[0]
        return 0.4, 0.4


def _pole(d: Drawing, cam: Camera, pose: Pose, height: float, thick: float, colour: Colour, light: Light) -> None:
    t = thick / 2
    draw_solid(d, cam, pose.to_camera(prism(-t, t, 0.0, -height, -t, t)), colour, light)


def _plate(d: Drawing, cam: Camera, centre: np.ndarray, radius: float, sides: int, colour: Colour) -> None:
    """A flat plate facing the camera (a regular polygon in a plane of constant depth)."""
    start = math.pi / 2 if sides == 3 else math.pi / 4 if sides == 4 else 0.0
    t = start + np.linspace(0.0, 2 * math.pi, sides, endpoint=False)
    pts = np.stack([centre[0] + radius * np.cos(t), centre[1] - radius * np.sin(t), np.full(sides, centre[2])], axis=1)
    d.polygon(cam.project(pts), colour)


def clutter_drawing(cam: Camera, spec: ClutterSpec, light: Light) -> Drawing:
    """The drawing of one clutter item."""
    d = Drawing()
    y = float(cam.ground_y(spec.z))
    pose = Pose(spec.x, y, spec.z, spec.ry)
    if spec.kind == "pole":
        height, thick, arm = spec.size
        _pole(d, cam, pose, height, thick, spec.colours[0], light)
        if arm > 0:
            top = np.array([[spec.x, y - height, spec.z], [spec.x + arm, y - height - 0.15, spec.z]])
            d.line(cam.project(top), cam.fy * thick * 0.7 / spec.z, spec.colours[0])
            lamp = Pose(spec.x + arm, y - height + 0.05, spec.z, 0.0)
            draw_solid(d, cam, lamp.to_camera(prism(-0.3, 0.3, 0.0, -0.15, -0.12, 0.12)), spec.colours[1], light)
    elif spec.kind == "sign":
        height, radius, sides = spec.size
        _pole(d, cam, pose, height, 0.07, (120, 122, 125), light)
        centre = np.array([spec.x, y - height - radius * 0.9, spec.z - 0.05])
        _plate(d, cam, centre, radius, int(sides), spec.colours[1])
        _plate(d, cam, centre - [0, 0, 0.01], radius * 0.78, int(sides), spec.colours[0])
    elif spec.kind == "tree":
        trunk_h, trunk_w, crown_r = spec.size
        trunk, crown = spec.colours
        _pole(d, cam, pose, trunk_h + crown_r * 0.5, trunk_w, trunk, light)
        for dx, dy, dz, r in sorted(spec.extra, key=lambda blob: -blob[2]):  # far blobs first
            centre = np.array([[spec.x + dx * crown_r, y - trunk_h - crown_r + dy * crown_r, spec.z + dz * crown_r]])
            if centre[0, 2] <= 0.5:
                continue
            u, v = cam.project(centre)[0]
            normal = np.array([dx, dy, dz]) / (math.sqrt(dx * dx + dy * dy + dz * dz) + 1e-6)
            rad = cam.fy * r * crown_r / centre[0, 2]
            d.ellipse(u, v, rad, rad * 0.9, scaled(crown, 0.25 + 0.85 * light.factor(normal)))
    elif spec.kind == "bush":
        (radius,) = spec.size
        for dx, dy, dz, r in spec.extra:
            centre = np.array([[spec.x + dx * radius, y - r * radius * 0.8 - abs(dy) * radius, spec.z + dz * radius]])
            if centre[0, 2] <= 0.5:
                continue
            u, v = cam.project(centre)[0]
            rad = cam.fy * r * radius / centre[0, 2]
            d.ellipse(u, v, rad, rad * 0.8, scaled(spec.colours[0], 0.7 + 0.5 * light.ambient - 0.2 * abs(dy)))
    elif spec.kind == "box":
        h, w, length = spec.size
        faces = draw_solid(
            d, cam, pose.to_camera(prism(-length / 2, length / 2, 0.0, -h, -w / 2, w / 2)), spec.colours[0], light
        )
        for name in ("front", "back", "left", "right"):
            if name in faces:
                panel = mix(spec.colours[0], (30, 34, 40), 0.7)
                draw_patch(d, cam, faces[name], (0.15, 0.85, 0.55, 0.85), panel, light)
    elif spec.kind == "bollard":
        (height,) = spec.size
        _pole(d, cam, pose, height, 0.14, spec.colours[0], light)
        band = Pose(spec.x, y - height * 0.75, spec.z, spec.ry)
        draw_solid(d, cam, band.to_camera(prism(-0.075, 0.075, 0.0, -0.12, -0.075, 0.075)), (235, 235, 230), light)
    else:
        raise ValueError(f"unknown clutter kind {spec.kind!r}")
    return d
