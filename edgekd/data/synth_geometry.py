"""Pinhole camera, object poses and convex solids for the synthetic scenes (KITTI camera coordinates).

Conventions follow the KITTI devkit readme: x right, y down, z forward; an object's location is the bottom
centre of its 3D box; rotation_y turns the object's local x axis (its heading) about the camera y axis, so
local x maps to (cos ry, 0, -sin ry); alpha = rotation_y - arctan2(x, z).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Corner order of a solid: bottom face (y = y0) then top face (y = y1), each (-x,-z) (+x,-z) (+x,+z) (-x,+z).
FACES: dict[str, tuple[int, int, int, int]] = {
    "bottom": (0, 1, 2, 3),
    "top": (4, 5, 6, 7),
    "back": (0, 3, 7, 4),  # local -x
    "front": (1, 2, 6, 5),  # local +x (the heading)
    "right": (0, 1, 5, 4),  # local -z
    "left": (3, 2, 6, 7),  # local +z
}


def wrap_angle(angle: float) -> float:
    """Angle wrapped to [-pi, pi)."""
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def observation_angle(rotation_y: float, x: float, z: float) -> float:
    """KITTI alpha = rotation_y - arctan2(x, z), wrapped to [-pi, pi) (devkit readme)."""
    return wrap_angle(rotation_y - math.atan2(x, z))


def rotation_y_matrix(ry: float) -> np.ndarray:
    c, s = math.cos(ry), math.sin(ry)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


@dataclass(frozen=True)
class Camera:
    """Pinhole camera with the ground plane y = height + z * tan_pitch below it."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    ground_height: float
    tan_pitch: float

    @property
    def P2(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx, 0.0], [0.0, self.fy, self.cy, 0.0], [0.0, 0.0, 1.0, 0.0]])

    @property
    def horizon(self) -> float:
        """Image row of the ground plane's vanishing line."""
        return self.cy + self.fy * self.tan_pitch

    @property
    def scale(self) -> float:
        """Pixel sizes given at 375 rows are multiplied by this."""
        return self.height / 375.0

    def ground_y(self, z: float | np.ndarray) -> float | np.ndarray:
        return self.ground_height + z * self.tan_pitch

    def project(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) camera points (z > 0) -> (N, 2) pixel coordinates."""
        out = np.empty((len(points), 2))
        inv_z = 1.0 / points[:, 2]
        out[:, 0] = self.fx * points[:, 0] * inv_z + self.cx
        out[:, 1] = self.fy * points[:, 1] * inv_z + self.cy
        return out

    def pixels_per_metre(self, z: float) -> float:
        return self.fy / z


@dataclass(frozen=True)
class Pose:
    """Object pose: bottom-centre location (camera coordinates) and rotation_y."""

    x: float
    y: float
    z: float
    ry: float

    def to_camera(self, local: np.ndarray) -> np.ndarray:
        """(N, 3) object-local points (x heading, y down, z lateral; origin at the bottom centre) -> camera."""
        return local @ rotation_y_matrix(self.ry).T + np.array([self.x, self.y, self.z])


def prism(x0: float, x1: float, y0: float, y1: float, z0: float, z1: float, top_x=None, top_z=None) -> np.ndarray:
    """8 local corners of a box from y0 (bottom) to y1 (top, y1 < y0), optionally with a smaller top face.

    top_x / top_z: (min, max) extent of the top face (frustum-like cabins, slanted windscreens).
    """
    tx0, tx1 = top_x if top_x is not None else (x0, x1)
    tz0, tz1 = top_z if top_z is not None else (z0, z1)
    return np.array(
        [
            [x0, y0, z0],
            [x1, y0, z0],
            [x1, y0, z1],
            [x0, y0, z1],
            [tx0, y1, tz0],
            [tx1, y1, tz0],
            [tx1, y1, tz1],
            [tx0, y1, tz1],
        ]
    )


@dataclass
class Face:
    name: str
    corners: np.ndarray  # (4, 3) camera coordinates
    normal: np.ndarray  # outward unit normal
    pixels: np.ndarray  # (4, 2) projected corners


_FACE_NAMES = tuple(FACES)
_FACE_INDEX = np.array([FACES[name] for name in _FACE_NAMES])


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross product of (N, 3) arrays (np.cross is several times slower on such small arrays)."""
    out = np.empty_like(a)
    out[:, 0] = a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1]
    out[:, 1] = a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2]
    out[:, 2] = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    return out


def solid_faces(corners: np.ndarray, camera: Camera) -> list[Face]:
    """Faces of a convex solid (8 camera-space corners in `prism` order) that face the camera (back-face culling).

    Outward normals are oriented away from the solid's centroid, which is valid for convex solids; a face whose
    first corner is degenerate (a wedge) takes its normal from the opposite corner.
    """
    quads = corners[_FACE_INDEX]  # (6, 4, 3)
    normals = _cross(quads[:, 1] - quads[:, 0], quads[:, 3] - quads[:, 0])
    norms = np.sqrt((normals * normals).sum(axis=1))
    use_alt = norms < 1e-9
    if use_alt.any():
        alt = _cross(quads[:, 3] - quads[:, 2], quads[:, 1] - quads[:, 2])
        normals[use_alt] = alt[use_alt]
        norms[use_alt] = np.sqrt((alt[use_alt] ** 2).sum(axis=1))
    centres = quads.mean(axis=1)
    valid = norms > 1e-9
    normals[valid] /= norms[valid, None]
    outward = np.einsum("ij,ij->i", normals, centres - corners.mean(axis=0))
    normals[outward < 0] *= -1.0
    facing = valid & (np.einsum("ij,ij->i", normals, centres) < 0)  # the camera sits at the origin
    pixels = camera.project(corners)[_FACE_INDEX]
    return [Face(_FACE_NAMES[i], quads[i], normals[i], pixels[i]) for i in np.flatnonzero(facing)]


def face_patch(face: Face, u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
    """A sub-quad of a face by bilinear coordinates (u along corner 0->1, v along corner 0->3), camera coords."""
    a, b, c, d = face.corners

    def point(u: float, v: float) -> np.ndarray:
        return (1 - u) * (1 - v) * a + u * (1 - v) * b + u * v * c + (1 - u) * v * d

    return np.array([point(u0, v0), point(u1, v0), point(u1, v1), point(u0, v1)])


def bev_rectangle(x: float, z: float, length: float, width: float, ry: float) -> np.ndarray:
    """(4, 2) bird's-eye (x, z) corners of a footprint, length along the heading."""
    c, s = math.cos(ry), math.sin(ry)
    heading = np.array([c, -s])
    lateral = np.array([s, c])
    centre = np.array([x, z])
    return np.array(
        [
            centre + sx * heading * length / 2 + sz * lateral * width / 2
            for sx, sz in ((1, 1), (1, -1), (-1, -1), (-1, 1))
        ]
    )


def rectangles_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test of two convex (4, 2) polygons (after a cheap bounding-box rejection)."""
    if (
        a[:, 0].max() < b[:, 0].min()
        or b[:, 0].max() < a[:, 0].min()
        or a[:, 1].max() < b[:, 1].min()
        or b[:, 1].max() < a[:, 1].min()
    ):
        return False
    for poly in (a, b):
        for i in range(4):
            edge = poly[(i + 1) % 4] - poly[i]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True
