"""Drawings of the labelled object classes: cars and vans (body, cabin with windows, wheels, lights),
pedestrians (legs, torso, arms, head) and cyclists (bicycle + rider), built from 3D parts and projected.

Every part is placed in the object's local frame (x = heading, y down, z = its left side, origin at the bottom
centre), so the label's dimensions/location/rotation_y and the rendered shape always agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgekd.data.synth_canvas import Colour, Drawing, Light, mix, scaled
from edgekd.data.synth_geometry import Camera, Face, Pose, face_patch, prism, solid_faces

TYRE: Colour = (24, 24, 26)


@dataclass(frozen=True)
class CarStyle:
    """Proportions of a car body, as fractions of its height (vertical) and length (horizontal)."""

    belt: float  # top of the lower body
    clearance: float
    wheel_radius: float
    cabin_bottom: tuple[float, float]  # cabin x extent at the belt line
    cabin_top: tuple[float, float]  # roof x extent
    side_glass: tuple[float, float]  # glazed part of the cabin sides (u from back to front)
    rear_glass: bool


CAR_STYLES: dict[str, CarStyle] = {
    "sedan": CarStyle(0.58, 0.12, 0.21, (-0.34, 0.22), (-0.22, 0.05), (0.06, 0.94), True),
    "hatchback": CarStyle(0.57, 0.12, 0.21, (-0.47, 0.20), (-0.43, 0.03), (0.06, 0.94), True),
    "suv": CarStyle(0.55, 0.16, 0.22, (-0.48, 0.22), (-0.46, 0.08), (0.05, 0.95), True),
    "van": CarStyle(0.42, 0.12, 0.17, (-0.50, 0.32), (-0.50, 0.20), (0.70, 0.97), False),
}


@dataclass(frozen=True)
class CarLook:
    style: str
    paint: Colour
    glass: Colour


@dataclass(frozen=True)
class PersonLook:
    shirt: Colour
    trousers: Colour
    skin: Colour
    hair: Colour
    phase: float  # walking (or pedalling) phase in [0, 1)
    stride: float  # 0 = standing


@dataclass(frozen=True)
class CyclistLook:
    rider: PersonLook
    frame: Colour
    helmet: Colour | None


def draw_solid(
    d: Drawing, cam: Camera, corners: np.ndarray, colour: Colour, light: Light, solid: bool = True
) -> dict[str, Face]:
    """Shaded visible faces of a convex solid (8 camera-space corners); returns them by face name."""
    faces = solid_faces(corners, cam)
    for face in faces:
        d.polygon(face.pixels, light.shade(colour, face.normal), solid)
    return {face.name: face for face in faces}


def draw_patch(
    d: Drawing, cam: Camera, face: Face, uv: tuple[float, float, float, float], colour: Colour, light: Light | None
) -> None:
    """A decal (window, lamp, plate) on a face; light=None paints it unshaded (lamps)."""
    quad = face_patch(face, *uv)
    d.polygon(cam.project(quad), colour if light is None else light.shade(colour, face.normal), solid=False)


def _circle(centre_x: float, centre_y: float, radius: float, z: float, n: int = 14) -> np.ndarray:
    """Local points of a circle in the object's x-y plane at lateral offset z."""
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return np.stack([centre_x + radius * np.cos(t), centre_y - radius * np.sin(t), np.full(n, z)], axis=1)


def car_drawing(cam: Camera, pose: Pose, dims: tuple[float, float, float], look: CarLook, light: Light) -> Drawing:
    """A car or van: wheels, lower body with lamps/plates/wheel discs, cabin with glazed faces."""
    h, w, length = dims
    st = CAR_STYLES[look.style]
    d = Drawing()
    belt, clear, r = st.belt * h, st.clearance * h, st.wheel_radius * h
    wheel_x = (length / 2 - 0.18 * length, -length / 2 + 0.19 * length)
    for xw in wheel_x:
        for z0, z1 in ((w / 2 - 0.24, w / 2 - 0.01), (-w / 2 + 0.01, -w / 2 + 0.24)):
            draw_solid(d, cam, pose.to_camera(prism(xw - r, xw + r, 0.0, -2 * r, z0, z1)), TYRE, light)

    body = prism(
        -length / 2,
        length / 2,
        -clear,
        -belt,
        -w / 2,
        w / 2,
        top_x=(-length / 2 + 0.03 * length, length / 2 - 0.05 * length),
        top_z=(-w / 2 + 0.04, w / 2 - 0.04),
    )
    faces = draw_solid(d, cam, pose.to_camera(body), look.paint, light)
    dark = scaled(look.paint, 0.55)
    if "back" in faces:
        back = faces["back"]
        draw_patch(d, cam, back, (0.0, 1.0, 0.0, 0.22), (55, 55, 58), light)
        for u0, u1 in ((0.03, 0.2), (0.8, 0.97)):
            draw_patch(d, cam, back, (u0, u1, 0.6, 0.88), (175, 25, 22), None)
        draw_patch(d, cam, back, (0.4, 0.6, 0.28, 0.48), (215, 215, 205), light)
    if "front" in faces:
        front = faces["front"]
        draw_patch(d, cam, front, (0.0, 1.0, 0.0, 0.2), (55, 55, 58), light)
        draw_patch(d, cam, front, (0.3, 0.7, 0.42, 0.78), (35, 35, 38), light)
        for u0, u1 in ((0.04, 0.22), (0.78, 0.96)):
            draw_patch(d, cam, front, (u0, u1, 0.55, 0.82), (235, 232, 215), None)
    for side, z in (("left", w / 2 + 0.01), ("right", -w / 2 - 0.01)):
        if side not in faces:
            continue
        draw_patch(d, cam, faces[side], (0.02, 0.98, 0.0, 0.14), dark, light)
        for xw in wheel_x:
            d.polygon(cam.project(pose.to_camera(_circle(xw, -r, 1.12 * r, z))), scaled(look.paint, 0.3))
            d.polygon(cam.project(pose.to_camera(_circle(xw, -r, r, z))), light.shade(TYRE, faces[side].normal))
            hub = light.shade((135, 135, 140), faces[side].normal)
            d.polygon(cam.project(pose.to_camera(_circle(xw, -r, 0.55 * r, z, n=10))), hub, solid=False)

    cab = prism(
        st.cabin_bottom[0] * length,
        st.cabin_bottom[1] * length,
        -belt,
        -h,
        -w / 2 + 0.05,
        w / 2 - 0.05,
        top_x=(st.cabin_top[0] * length, st.cabin_top[1] * length),
        top_z=(-w / 2 + 0.18, w / 2 - 0.18),
    )
    cab_faces = draw_solid(d, cam, pose.to_camera(cab), look.paint, light)
    for name, face in cab_faces.items():
        glass = mix(light.shade(look.glass, face.normal), (200, 210, 225), 0.18 * max(0.0, -face.normal[1]))
        if name in ("left", "right"):
            u0, u1 = st.side_glass
            mid = 0.5 * (u0 + u1)
            draw_patch(d, cam, face, (u0, mid - 0.025, 0.1, 0.9), glass, None)
            draw_patch(d, cam, face, (mid + 0.025, u1, 0.1, 0.9), glass, None)
        elif name == "front" or (name == "back" and st.rear_glass):
            draw_patch(d, cam, face, (0.07, 0.93, 0.1, 0.9), glass, None)
        elif name == "back":
            for u0, u1 in ((0.1, 0.47), (0.53, 0.9)):
                draw_patch(d, cam, face, (u0, u1, 0.45, 0.85), glass, None)
    return d


def _limb(
    d: Drawing, cam: Camera, pose: Pose, points: list[tuple[float, float, float]], width_m: float, colour: Colour
) -> None:
    cam_pts = pose.to_camera(np.array(points))
    width_px = cam.fy * width_m / float(cam_pts[:, 2].mean())
    d.line(cam.project(cam_pts), width_px, colour)


def _head(
    d: Drawing,
    cam: Camera,
    pose: Pose,
    centre: tuple[float, float, float],
    radius: float,
    look: PersonLook,
    helmet: Colour | None,
    light: Light,
) -> None:
    """A head: a hair (or helmet) disc with the face drawn when the person looks towards the camera."""
    c = pose.to_camera(np.array([centre]))[0]
    u, v = cam.project(c[None])[0]
    rad = cam.fy * radius / c[2]
    top = helmet if helmet is not None else look.hair
    d.ellipse(u, v, rad, rad * 1.08, scaled(top, 0.6 + 0.4 * light.ambient))
    heading = pose.to_camera(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    forward = heading[0] - heading[1]
    facing = -float(np.dot(forward, c / np.linalg.norm(c)))  # > 0: the face turns towards the camera
    if facing > -0.3:
        shift = rad * 0.45 * forward[0] / max(0.2, math.hypot(forward[0], forward[2]))
        face_r = rad * (0.55 + 0.25 * max(0.0, facing))
        d.ellipse(
            u + shift, v + rad * 0.18, face_r, face_r * 1.1, scaled(look.skin, 0.7 + 0.3 * light.ambient), solid=False
        )
        if helmet is not None:
            d.chord(u, v, rad, 180, 360, helmet)


def _torso(
    d: Drawing,
    cam: Camera,
    pose: Pose,
    bottom: np.ndarray,
    top: np.ndarray,
    depth: float,
    width: float,
    colour: Colour,
    light: Light,
) -> None:
    """A box from `bottom` to `top` (local points, centre of the hip and shoulder lines)."""
    axis = top - bottom
    across = np.array([-axis[1], axis[0], 0.0])
    across *= depth / 2 / np.linalg.norm(across)
    side = np.array([0.0, 0.0, width / 2])
    corners = np.array(
        [
            bottom - across - side,
            bottom + across - side,
            bottom + across + side,
            bottom - across + side,
            top - across - side,
            top + across - side,
            top + across + side,
            top - across + side,
        ]
    )
    draw_solid(d, cam, pose.to_camera(corners), colour, light)


def _depth_order(pose: Pose, parts: list[tuple[np.ndarray, object]]) -> list[object]:
    """Parts sorted far to near by the camera distance of their local anchor point."""
    anchors = pose.to_camera(np.array([p for p, _ in parts]))
    order = np.argsort(-np.linalg.norm(anchors, axis=1), kind="stable")
    return [parts[i][1] for i in order]


def pedestrian_drawing(cam: Camera, pose: Pose, height: float, look: PersonLook, light: Light) -> Drawing:
    """Legs and arms (thick lines swinging with the walking phase), a shaded torso box and a head."""
    d = Drawing()
    s = height / 1.75
    hip, shoulder = 0.5 * height, 0.81 * height
    swing = look.stride * s * math.sin(2 * math.pi * look.phase)
    parts = []
    for side, sign in ((0.09 * s, 1.0), (-0.09 * s, -1.0)):
        foot = sign * swing
        leg = [(0.0, -hip, side), (foot * 0.5 + 0.03, -hip * 0.5, side), (foot, -0.04 * s, side * 1.1)]
        parts.append((np.array([foot * 0.5, -hip * 0.5, side]), ("limb", leg, 0.13 * s, look.trousers)))
        hand = -sign * swing * 0.6
        arm = [(0.0, -shoulder + 0.05 * s, side * 2.55), (hand, -hip + 0.04 * s, side * 2.85)]
        parts.append((np.array([hand * 0.5, -hip - 0.1, side * 2.7]), ("limb", arm, 0.085 * s, look.shirt)))
    parts.append((np.array([0.0, -0.65 * height, 0.0]), ("torso",)))
    for part in _depth_order(pose, parts):
        if part[0] == "limb":
            _, pts, width, colour = part
            _limb(d, cam, pose, pts, width, light.shade(colour, np.array([0.0, 0.0, -1.0])))
        else:
            _torso(
                d,
                cam,
                pose,
                np.array([0.0, -hip + 0.04 * s, 0.0]),
                np.array([0.0, -shoulder, 0.0]),
                0.22 * s,
                0.36 * s,
                look.shirt,
                light,
            )
    _head(d, cam, pose, (0.02 * s, -0.925 * height, 0.0), 0.11 * s, look, None, light)
    return d


def cyclist_drawing(cam: Camera, pose: Pose, height: float, look: CyclistLook, light: Light) -> Drawing:
    """A bicycle (two tyres, frame, handlebar) and its rider (legs on the pedals, leaning torso, head)."""
    d = Drawing()
    s = height / 1.7
    r = 0.34 * s
    rear, front, crank = np.array([-0.52 * s, -r, 0.0]), np.array([0.52 * s, -r, 0.0]), np.array([0.0, -0.3 * s, 0.0])
    seat, head_tube = np.array([-0.14 * s, -0.88 * s, 0.0]), np.array([0.38 * s, -0.92 * s, 0.0])
    bar = np.array([0.34 * s, -1.02 * s, 0.0])
    hip, shoulder = seat + np.array([0.0, -0.05 * s, 0.0]), np.array([0.22 * s, -1.36 * s, 0.0])
    angle = 2 * math.pi * look.rider.phase
    z_side = 0.11 * s

    def bike(dd: Drawing) -> None:
        for centre in (rear, front):
            ring = pose.to_camera(_circle(centre[0], centre[1], r, 0.0, n=16))
            width = cam.fy * 0.05 * s / float(ring[:, 2].mean())
            dd.line(cam.project(np.vstack([ring, ring[:1]])), width, TYRE)
        frame = pose.to_camera(np.array([rear, crank, seat, rear, seat, head_tube, crank, head_tube, front]))
        dd.line(cam.project(frame), cam.fy * 0.035 * s / float(frame[:, 2].mean()), look.frame)
        handle = pose.to_camera(np.array([head_tube, bar, bar + [0, 0, 0.25 * s], bar - [0, 0, 0.25 * s]]))
        dd.line(cam.project(handle[:2]), cam.fy * 0.03 * s / float(handle[:, 2].mean()), look.frame)
        dd.line(cam.project(handle[2:]), cam.fy * 0.03 * s / float(handle[:, 2].mean()), (30, 30, 30))

    # Painter's order within the cyclist: far leg and arm, bicycle, torso, near leg and arm, head.
    side_points = pose.to_camera(np.array([[0.0, -0.6 * s, z_side], [0.0, -0.6 * s, -z_side]]))
    near = 1.0 if np.linalg.norm(side_points[0]) < np.linalg.norm(side_points[1]) else -1.0
    trousers = light.shade(look.rider.trousers, np.array([0.0, 0.0, -1.0]))
    sleeve = light.shade(look.rider.shirt, np.array([0.0, -0.5, -0.8]))

    def leg_and_arm(sign: float) -> None:
        phase = angle if sign > 0 else angle + math.pi
        pedal = crank + np.array([0.17 * s * math.cos(phase), 0.17 * s * math.sin(phase), sign * z_side])
        knee = 0.5 * (hip + pedal) + np.array([0.2 * s, -0.1 * s, 0.0])
        leg = [tuple(hip + [0, 0, sign * z_side]), tuple(knee + [0, 0, sign * z_side]), tuple(pedal)]
        _limb(d, cam, pose, leg, 0.12 * s, trousers)
        arm = [tuple(shoulder + [0, 0.04 * s, sign * 0.2 * s]), tuple(bar + [0, 0, sign * 0.22 * s])]
        _limb(d, cam, pose, arm, 0.08 * s, sleeve)

    leg_and_arm(-near)
    bike(d)
    _torso(d, cam, pose, hip, shoulder, 0.2 * s, 0.34 * s, look.rider.shirt, light)
    leg_and_arm(near)
    head = shoulder + np.array([0.1 * s, -0.21 * s, 0.0])
    _head(d, cam, pose, tuple(head), 0.11 * s, look.rider, look.helmet, light)
    return d
