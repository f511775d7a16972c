"""Random scene layout: camera mounting, road (lanes, parking strips, sidewalks, verges), buildings, objects
(moving and parked cars, vans, pedestrian groups, cyclists, far traffic), clutter and lighting.

All randomness of a scene is drawn here (and in the background textures) from one numpy Generator, so a scene
depends only on (seed, image index). Drawing code turns these specs into pixels deterministically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgekd.data.synth_canvas import Colour, Light
from edgekd.data.synth_clutter import ClutterSpec
from edgekd.data.synth_config import SynthConfig
from edgekd.data.synth_geometry import Camera, bev_rectangle, rectangles_overlap, wrap_angle
from edgekd.data.synth_objects import CarLook, CyclistLook, PersonLook

SCENE_KINDS = ("urban", "suburban", "highway")
# Per scene kind: multipliers of the config's mean counts / probabilities.
KIND_FACTORS: dict[str, dict[str, float]] = {
    "urban": {
        "moving": 0.8,
        "parking": 0.85,
        "buildings": 1.45,
        "peds": 1.5,
        "cyclists": 1.25,
        "trees": 0.6,
        "poles": 1.2,
        "bins": 1.4,
    },
    "suburban": {
        "moving": 0.9,
        "parking": 0.55,
        "buildings": 0.75,
        "peds": 0.75,
        "cyclists": 1.0,
        "trees": 1.4,
        "poles": 1.0,
        "bins": 0.8,
    },
    "highway": {
        "moving": 1.5,
        "parking": 0.04,
        "buildings": 0.15,
        "peds": 0.12,
        "cyclists": 0.25,
        "trees": 1.2,
        "poles": 0.8,
        "bins": 0.2,
    },
}

CAR_PAINTS: tuple[tuple[Colour, float], ...] = (
    ((225, 225, 222), 0.2),
    ((172, 174, 178), 0.16),
    ((105, 108, 112), 0.14),
    ((32, 33, 37), 0.16),
    ((35, 55, 105), 0.07),
    ((60, 100, 165), 0.05),
    ((150, 28, 28), 0.08),
    ((95, 22, 28), 0.04),
    ((35, 75, 55), 0.03),
    ((190, 175, 140), 0.04),
    ((215, 175, 45), 0.015),
    ((210, 110, 40), 0.015),
)
CLOTHES: tuple[Colour, ...] = (
    (30, 30, 35),
    (200, 200, 195),
    (150, 30, 35),
    (40, 60, 120),
    (70, 110, 60),
    (210, 170, 60),
    (120, 80, 50),
    (90, 90, 95),
    (180, 90, 130),
    (60, 140, 170),
    (230, 120, 40),
    (235, 235, 230),
    (110, 40, 100),
)
TROUSERS: tuple[Colour, ...] = ((30, 35, 55), (40, 40, 42), (70, 70, 75), (150, 130, 95), (55, 65, 95), (20, 20, 22))
SKIN: tuple[Colour, ...] = ((235, 195, 165), (205, 160, 125), (160, 115, 80), (110, 75, 50), (225, 180, 150))
HAIR: tuple[Colour, ...] = ((25, 20, 18), (70, 45, 30), (140, 100, 60), (200, 170, 110), (120, 120, 120))
BUILDING: tuple[Colour, ...] = (
    (200, 190, 170),
    (170, 160, 150),
    (150, 90, 70),
    (220, 215, 205),
    (120, 125, 130),
    (185, 170, 130),
    (140, 150, 160),
    (100, 80, 70),
)
GREENS: tuple[Colour, ...] = ((60, 95, 45), (45, 80, 40), (85, 110, 55), (70, 85, 40), (40, 65, 45), (95, 100, 50))
SIGN_COLOURS: tuple[tuple[Colour, Colour], ...] = (
    ((235, 235, 230), (190, 30, 30)),
    ((40, 80, 170), (235, 235, 235)),
    ((235, 200, 40), (30, 30, 30)),
    ((30, 110, 60), (235, 235, 235)),
)
BIN_PAINTS: tuple[Colour, ...] = (
    (40, 90, 60),
    (110, 112, 115),
    (30, 60, 110),
    (200, 120, 40),
    (170, 172, 176),
    (150, 30, 30),
    (225, 225, 220),
)


@dataclass(frozen=True)
class RoadSpec:
    """Road cross-section in road coordinates (rel = x - curvature * z**2), all offsets in metres."""

    curvature: float
    left_edge: float
    right_edge: float
    dashed: tuple[float, ...]  # dashed lane boundaries
    solid: tuple[float, ...]  # solid lines (edge lines, divider)
    line_colour: Colour
    dash_phase: float
    kerb: float
    sidewalk: tuple[float, float]  # (left, right) widths; 0 = none
    verge: tuple[str, str]  # grass | pavement
    asphalt: Colour
    pavement: Colour
    grass: Colour
    crosswalk: tuple[float, float] | None  # (z0, z1)

    def x_at(self, rel: float, z: float) -> float:
        return rel + self.curvature * z * z

    def yaw_at(self, z: float) -> float:
        """Heading of the road at depth z, radians from +z towards +x."""
        return math.atan(2.0 * self.curvature * z)


@dataclass(frozen=True)
class BuildingSpec:
    side: int  # -1 left, +1 right
    rel: float  # facade offset (road coordinates)
    z0: float
    z1: float
    height: float
    colour: Colour
    window: Colour
    floor: float  # storey height
    bay: float  # window spacing along the facade


@dataclass(frozen=True)
class ObjectSpec:
    """An object to render and (unless far) to label."""

    type: str  # Car | Van | Pedestrian | Cyclist
    x: float
    y: float
    z: float
    ry: float
    dims: tuple[float, float, float]  # height, width, length (label dimensions)
    look: CarLook | PersonLook | CyclistLook
    far: bool = False


@dataclass
class Scene:
    camera: Camera
    kind: str
    road: RoadSpec
    light: Light
    sky: tuple[Colour, Colour]  # top, horizon
    haze: float  # metres; ground colours fade to the horizon colour with this scale
    buildings: list[BuildingSpec]
    objects: list[ObjectSpec] = field(default_factory=list)
    clutter: list[ClutterSpec] = field(default_factory=list)


def make_camera(size: tuple[int, int], cfg: SynthConfig, rng: np.random.Generator) -> Camera:
    """KITTI-like P2 scaled to `size`; camera height and ground pitch jittered per image."""
    width, height = size
    sx, sy = width / 1242.0, height / 375.0
    return Camera(
        fx=cfg.focal * sx,
        fy=cfg.focal * sy,
        cx=cfg.principal_x * sx,
        cy=cfg.principal_y * sy,
        width=width,
        height=height,
        ground_height=cfg.camera_height + rng.uniform(-1, 1) * cfg.camera_height_jitter,
        tan_pitch=rng.uniform(-1, 1) * cfg.pitch_jitter,
    )


def _pick(rng: np.random.Generator, items: tuple, weights: tuple[float, ...] | None = None):
    if weights is None:
        return items[int(rng.integers(len(items)))]
    p = np.asarray(weights, dtype=np.float64)
    return items[int(rng.choice(len(items), p=p / p.sum()))]


def _jitter(rng: np.random.Generator, colour: Colour, amount: float) -> Colour:
    return tuple(int(v) for v in np.clip(np.asarray(colour) + rng.normal(0, amount, 3), 0, 255))


def _depth(rng: np.random.Generator, lo: float, hi: float, power: float) -> float:
    return lo + (hi - lo) * float(rng.random()) ** power


def _light(rng: np.random.Generator, cfg: SynthConfig) -> tuple[Light, tuple[Colour, Colour], float]:
    elevation = math.radians(rng.uniform(12, 65))
    azimuth = rng.uniform(0, 2 * math.pi)
    sun = (math.cos(elevation) * math.sin(azimuth), -math.sin(elevation), math.cos(elevation) * math.cos(azimuth))
    weather = _pick(rng, ("sunny", "overcast", "dusk"), (0.55, 0.35, 0.1))
    ambient = rng.uniform(*cfg.ambient_range)
    if weather == "overcast":
        light = Light(sun, min(0.95, ambient + 0.2), rng.uniform(0.05, 0.15), 0.12)
        sky = (_jitter(rng, (175, 180, 188), 12), _jitter(rng, (215, 215, 215), 8))
    elif weather == "dusk":
        light = Light(sun, ambient * 0.8, rng.uniform(0.3, 0.5), 0.08)
        sky = (_jitter(rng, (70, 90, 140), 12), _jitter(rng, (235, 170, 120), 12))
    else:
        light = Light(sun, ambient, rng.uniform(0.45, 0.7), 0.15)
        sky = (_jitter(rng, (85, 135, 205), 14), _jitter(rng, (200, 215, 230), 8))
    return light, sky, float(rng.uniform(120, 400))


def _road(rng: np.random.Generator, kind: str, cfg: SynthConfig) -> tuple[RoadSpec, list[tuple[float, int]], dict]:
    """Right-hand traffic: oncoming lanes left of the divider, the ego lane among the same-direction ones.

    Returns the road, its driving lanes as (centre rel, +1 away / -1 oncoming) and which sides have parking.
    """
    lane_w = rng.uniform(3.0, 3.7)
    n_same = int(_pick(rng, (1, 2, 3), (0.5, 0.35, 0.15) if kind != "highway" else (0.1, 0.5, 0.4)))
    n_opp = int(_pick(rng, (0, 1, 2), (0.2, 0.6, 0.2) if kind != "highway" else (0.3, 0.2, 0.5)))
    ego = int(rng.integers(n_same))
    divider = -ego * lane_w - lane_w / 2
    lanes = [((j - ego) * lane_w, +1) for j in range(n_same)] + [
        (divider - (m + 0.5) * lane_w, -1) for m in range(n_opp)
    ]
    parking_prob = KIND_FACTORS[kind]["parking"]
    park_left = n_opp > 0 and rng.random() < parking_prob
    park_right = rng.random() < parking_prob
    left_edge = divider - n_opp * lane_w - (2.3 if park_left else 0.0) - 0.3
    right_edge = divider + n_same * lane_w + (2.3 if park_right else 0.0) + 0.3
    dashed = tuple(divider + j * lane_w for j in range(1, n_same)) + tuple(
        divider - m * lane_w for m in range(1, n_opp)
    )
    solid = (left_edge + 0.25, right_edge - 0.25) + ((divider,) if n_opp > 0 else ())
    sidewalk_prob = 0.95 if kind == "urban" else 0.7 if kind == "suburban" else 0.1
    sidewalk = tuple(rng.uniform(1.8, 4.5) if rng.random() < sidewalk_prob else 0.0 for _ in range(2))
    verge = tuple(
        "pavement" if rng.random() < min(0.95, cfg.building_prob * KIND_FACTORS[kind]["buildings"]) else "grass"
        for _ in range(2)
    )
    grey = rng.uniform(80, 125)
    crosswalk = None
    if rng.random() < cfg.crosswalk_prob:
        start = rng.uniform(8, 35)
        crosswalk = (start, start + rng.uniform(3, 5))
    road = RoadSpec(
        curvature=float(np.clip(rng.normal(0, 0.0005), -0.0012, 0.0012)),
        left_edge=left_edge,
        right_edge=right_edge,
        dashed=dashed,
        solid=solid,
        line_colour=(235, 235, 230) if rng.random() < 0.85 else (230, 200, 90),
        dash_phase=rng.uniform(0, 9),
        kerb=0.2,
        sidewalk=sidewalk,
        verge=verge,
        asphalt=_jitter(rng, (grey, grey, grey + 3), 4),
        pavement=_jitter(rng, (165, 160, 152), 12),
        grass=_jitter(rng, _pick(rng, GREENS + ((130, 120, 80),)), 8),
        crosswalk=crosswalk,
    )
    parking = {-1: park_left, 1: park_right}
    return road, lanes, parking


def _buildings(rng: np.random.Generator, road: RoadSpec) -> list[BuildingSpec]:
    out = []
    for side, verge, walk in ((-1, road.verge[0], road.sidewalk[0]), (1, road.verge[1], road.sidewalk[1])):
        edge = road.left_edge if side < 0 else road.right_edge
        base = edge + side * (road.kerb + walk)
        z = rng.uniform(-10, 15)
        near_setback = 0.0 if verge == "pavement" else rng.uniform(12, 40)
        if verge == "grass" and rng.random() < 0.5:
            continue
        while z < 220:
            length = rng.uniform(8, 35)
            out.append(
                BuildingSpec(
                    side=side,
                    rel=base + side * (near_setback + rng.uniform(0.2, 2.5)),
                    z0=max(z, 1.5),
                    z1=z + length,
                    height=rng.uniform(5, 22),
                    colour=_jitter(rng, _pick(rng, BUILDING), 10),
                    window=_jitter(rng, (45, 52, 62), 10) if rng.random() < 0.8 else _jitter(rng, (150, 165, 185), 15),
                    floor=rng.uniform(2.8, 3.6),
                    bay=rng.uniform(2.2, 4.0),
                )
            )
            z += length + (rng.uniform(0, 8) if rng.random() < 0.5 else 0.0)
    return [b for b in out if b.z1 > 2.0]


def _car_look(rng: np.random.Generator, van: bool) -> CarLook:
    style = "van" if van else _pick(rng, ("sedan", "hatchback", "suv"), (0.45, 0.35, 0.2))
    paint = _jitter(rng, _pick(rng, tuple(c for c, _ in CAR_PAINTS), tuple(w for _, w in CAR_PAINTS)), 8)
    return CarLook(style=style, paint=paint, glass=_jitter(rng, (40, 48, 58), 6))


def _car_dims(rng: np.random.Generator, look: CarLook) -> tuple[float, float, float]:
    if look.style == "van":
        return (
            float(np.clip(rng.normal(2.2, 0.15), 1.9, 2.6)),
            float(np.clip(rng.normal(1.9, 0.08), 1.7, 2.1)),
            float(np.clip(rng.normal(5.0, 0.4), 4.2, 6.0)),
        )
    h = float(np.clip(rng.normal(1.5, 0.08), 1.32, 1.75)) + (0.17 if look.style == "suv" else 0.0)
    return h, float(np.clip(rng.normal(1.63, 0.08), 1.45, 1.85)), float(np.clip(rng.normal(3.9, 0.33), 3.2, 4.8))


def _person_look(rng: np.random.Generator, walking: bool) -> PersonLook:
    return PersonLook(
        shirt=_jitter(rng, _pick(rng, CLOTHES), 12),
        trousers=_jitter(rng, _pick(rng, TROUSERS + CLOTHES[:3]), 8),
        skin=_jitter(rng, _pick(rng, SKIN), 6),
        hair=_jitter(rng, _pick(rng, HAIR), 6),
        phase=float(rng.random()),
        stride=float(rng.uniform(0.18, 0.32)) if walking else 0.0,
    )


class _Placer:
    """Keeps the bird's-eye footprints placed so far and rejects overlapping ones."""

    def __init__(self) -> None:
        self.rects: list[np.ndarray] = [bev_rectangle(0.0, 0.0, 4.0, 1.8, -math.pi / 2)]  # the ego car

    def try_add(self, x: float, z: float, length: float, width: float, ry: float, margin: float) -> bool:
        rect = bev_rectangle(x, z, length + 2 * margin, width + 2 * margin, ry)
        if any(rectangles_overlap(rect, other) for other in self.rects):
            return False
        self.rects.append(bev_rectangle(x, z, length, width, ry))
        return True


def _add_vehicle(rng, scene, placer, cfg, rel, z, direction, far, lateral_sd=0.2, margin=0.4) -> bool:
    road = scene.road
    look = _car_look(rng, van=rng.random() < cfg.van_fraction)
    h, w, length = _car_dims(rng, look)
    rel = rel + rng.normal(0, lateral_sd)
    x = road.x_at(rel, z)
    yaw = road.yaw_at(z) + rng.normal(0, 0.03)
    ry = wrap_angle(yaw - math.pi / 2 if direction > 0 else yaw + math.pi / 2)
    if not placer.try_add(x, z, length, w, ry, margin):
        return False
    kind = "Van" if look.style == "van" else "Car"
    scene.objects.append(ObjectSpec(kind, x, float(scene.camera.ground_y(z)), z, ry, (h, w, length), look, far))
    return True


def _vehicles(rng, scene, placer, cfg, lanes, parking) -> None:
    road, f = scene.road, KIND_FACTORS[scene.kind]
    for centre, direction in lanes:
        for _ in range(rng.poisson(cfg.moving_cars_per_lane * f["moving"])):
            lo = 9.0 if abs(centre) < 1.0 else cfg.min_depth
            z = _depth(rng, lo, cfg.max_label_depth, cfg.depth_power)
            _add_vehicle(rng, scene, placer, cfg, centre, z, direction, far=False, margin=1.5)
    for side in (-1, 1):
        if not parking[side]:
            continue
        edge = road.left_edge if side < 0 else road.right_edge
        strip = edge - side * (0.3 + 1.15)
        for _ in range(rng.poisson(cfg.parked_rows_mean)):
            z = _depth(rng, cfg.min_depth - 1.0, cfg.max_label_depth, cfg.depth_power)
            for _ in range(1 + rng.poisson(max(0.0, cfg.parked_row_length_mean - 1))):
                same = rng.random() < 0.75
                direction = side if same else -side
                _add_vehicle(rng, scene, placer, cfg, strip, z, direction, far=False, lateral_sd=0.12, margin=0.15)
                z += rng.uniform(4.4, 7.0)
                if z > cfg.far_depth:
                    break
    for _ in range(rng.poisson(cfg.far_objects_mean)):
        centre, direction = lanes[int(rng.integers(len(lanes)))]
        z = rng.uniform(cfg.max_label_depth, cfg.far_depth)
        _add_vehicle(rng, scene, placer, cfg, centre, z, direction, far=True, margin=1.0)


def _sidewalk_rel(rng: np.random.Generator, road: RoadSpec, side: int) -> float:
    edge = road.left_edge if side < 0 else road.right_edge
    walk = road.sidewalk[0 if side < 0 else 1]
    width = walk if walk > 0 else 1.5
    return edge + side * (road.kerb + rng.uniform(0.4, max(0.5, width - 0.4)))


def _people(rng, scene, placer, cfg) -> None:
    road, f = scene.road, KIND_FACTORS[scene.kind]
    if rng.random() < min(0.95, cfg.pedestrian_scene_prob * f["peds"]):
        for _ in range(1 + rng.poisson(cfg.pedestrian_groups_mean)):
            crossing = rng.random() < cfg.pedestrian_crossing_prob
            z0 = _depth(rng, cfg.min_depth + 1.5, 55.0, cfg.depth_power)
            if crossing:
                rel0 = rng.uniform(road.left_edge + 1, road.right_edge - 1)
                heading = rng.choice([0.0, math.pi])
            else:
                side = int(rng.choice([-1, 1]))
                rel0 = _sidewalk_rel(rng, road, side)
                heading = rng.choice([-math.pi / 2, math.pi / 2])
            walking = rng.random() < 0.75
            for _ in range(1 + rng.poisson(cfg.pedestrian_group_size_mean)):
                z = z0 + rng.normal(0, 1.2)
                rel = rel0 + rng.normal(0, 0.5)
                if z < cfg.min_depth:
                    continue
                x = road.x_at(rel, z)
                ry = wrap_angle(heading + road.yaw_at(z) + rng.normal(0, 0.25 if walking else 1.2))
                h = float(np.clip(rng.normal(1.74, 0.09), 1.5, 1.98)) if rng.random() > 0.06 else rng.uniform(1.1, 1.4)
                w, length = (
                    float(np.clip(rng.normal(0.62, 0.06), 0.5, 0.8)),
                    float(np.clip(rng.normal(0.8, 0.12), 0.5, 1.1)),
                )
                if placer.try_add(x, z, 0.6, 0.5, ry, 0.1):
                    look = _person_look(rng, walking)
                    scene.objects.append(
                        ObjectSpec("Pedestrian", x, float(scene.camera.ground_y(z)), z, ry, (h, w, length), look)
                    )
    if rng.random() < min(0.95, cfg.cyclist_scene_prob * f["cyclists"]):
        for _ in range(1 + rng.poisson(cfg.cyclists_extra_mean)):
            z = _depth(rng, cfg.min_depth + 2.0, cfg.max_label_depth, cfg.depth_power)
            where = rng.random()
            if where < 0.55:
                rel, direction = road.right_edge - rng.uniform(0.6, 1.4), 1
            elif where < 0.8:
                rel, direction = road.left_edge + rng.uniform(0.6, 1.4), -1
            else:
                side = int(rng.choice([-1, 1]))
                rel, direction = _sidewalk_rel(rng, road, side), int(rng.choice([-1, 1]))
            x = road.x_at(rel, z)
            yaw = road.yaw_at(z) + rng.normal(0, 0.06)
            ry = wrap_angle(yaw - math.pi / 2 if direction > 0 else yaw + math.pi / 2)
            h = float(np.clip(rng.normal(1.72, 0.07), 1.5, 1.9))
            w, length = (
                float(np.clip(rng.normal(0.6, 0.05), 0.5, 0.75)),
                float(np.clip(rng.normal(1.76, 0.1), 1.5, 2.0)),
            )
            if placer.try_add(x, z, length, w, ry, 0.2):
                look = CyclistLook(
                    rider=_person_look(rng, walking=True),
                    frame=_jitter(rng, _pick(rng, CLOTHES), 15),
                    helmet=_jitter(rng, _pick(rng, CLOTHES), 10) if rng.random() < 0.5 else None,
                )
                scene.objects.append(
                    ObjectSpec("Cyclist", x, float(scene.camera.ground_y(z)), z, ry, (h, w, length), look)
                )


def _blobs(rng: np.random.Generator, n: int, spread: float) -> tuple[tuple[float, ...], ...]:
    """(dx, dy, dz, r) offsets of the ellipses of a tree crown or bush, in units of its radius."""
    return tuple(
        (
            float(rng.normal(0, spread)),
            float(rng.normal(0, spread * 0.7)),
            float(rng.normal(0, spread)),
            float(rng.uniform(0.45, 0.75)),
        )
        for _ in range(n)
    )


def _clutter(rng, scene, placer, cfg) -> None:
    """Clutter per roadside; items are specified in road coordinates (x = rel) and placed if they fit."""
    road, f = scene.road, KIND_FACTORS[scene.kind]
    items: list[ClutterSpec] = []
    for side_index, side in enumerate((-1, 1)):
        edge = road.left_edge if side < 0 else road.right_edge
        walk = road.sidewalk[side_index]
        kerb_rel = edge + side * (road.kerb + 0.45)
        outer = edge + side * (road.kerb + max(walk, 0.8))
        grass = road.verge[side_index] == "grass"
        along = wrap_angle(-math.pi / 2)

        def z_any() -> float:
            return float(rng.uniform(2.5, 90.0))

        for _ in range(rng.poisson(cfg.poles_per_side * f["poles"])):
            arm = -side * rng.uniform(1.0, 2.5) if rng.random() < 0.4 else 0.0
            colour = _jitter(rng, _pick(rng, ((120, 122, 125), (60, 80, 65), (50, 50, 52), (150, 140, 120))), 8)
            size = (rng.uniform(4, 9), rng.uniform(0.12, 0.25), arm)
            items.append(ClutterSpec("pole", kerb_rel, z_any(), 0.0, size, (colour, (220, 220, 200))))
        for _ in range(rng.poisson(cfg.signs_per_side)):
            colours = _pick(rng, SIGN_COLOURS)
            size = (rng.uniform(2.0, 2.8), rng.uniform(0.3, 0.45), float(_pick(rng, (3, 4, 12))))
            items.append(ClutterSpec("sign", kerb_rel, z_any(), 0.0, size, colours))
        for _ in range(rng.poisson(cfg.trees_per_side * f["trees"] * (1.0 if grass else 0.6))):
            rel = outer + side * rng.uniform(0.5, 8.0) if grass else kerb_rel + side * 0.4
            size = (rng.uniform(1.8, 3.5), rng.uniform(0.2, 0.45), rng.uniform(1.2, 3.0))
            colours = (_jitter(rng, (85, 65, 45), 10), _jitter(rng, _pick(rng, GREENS), 10))
            blobs = _blobs(rng, int(rng.integers(4, 8)), 0.45)
            items.append(ClutterSpec("tree", rel, z_any(), 0.0, size, colours, blobs))
        for _ in range(rng.poisson(cfg.bushes_per_side * (1.0 if grass else 0.4))):
            rel = outer + side * rng.uniform(0.3, 4.0)
            colours = (_jitter(rng, _pick(rng, GREENS), 10),)
            blobs = _blobs(rng, int(rng.integers(3, 6)), 0.5)
            items.append(ClutterSpec("bush", rel, z_any(), 0.0, (rng.uniform(0.4, 1.1),), colours, blobs))
        for _ in range(rng.poisson(cfg.bins_per_side * f["bins"])):
            rel = (outer - side * 0.6) if walk > 0 else outer + side * 0.6
            size = (rng.uniform(0.8, 1.6), rng.uniform(0.6, 1.2), rng.uniform(0.6, 1.6))
            ry = wrap_angle(along + rng.normal(0, 0.2))
            items.append(ClutterSpec("box", rel, z_any(), ry, size, (_jitter(rng, _pick(rng, BIN_PAINTS), 10),)))
        for _ in range(rng.poisson(cfg.bollards_per_side)):
            colour = _jitter(rng, _pick(rng, ((60, 60, 62), (200, 60, 40), (120, 120, 125))), 8)
            items.append(
                ClutterSpec("bollard", kerb_rel - side * 0.2, z_any(), 0.0, (rng.uniform(0.7, 1.1),), (colour,))
            )
    for spec in items:
        x = road.x_at(spec.x, spec.z)
        ry = wrap_angle(spec.ry + road.yaw_at(spec.z)) if spec.kind == "box" else spec.ry
        length, width = spec.footprint()
        if placer.try_add(x, spec.z, length, width, ry, 0.05):
            scene.clutter.append(ClutterSpec(spec.kind, x, spec.z, ry, spec.size, spec.colours, spec.extra))


def sample_scene(rng: np.random.Generator, camera: Camera, cfg: SynthConfig) -> Scene:
    """Draw a complete scene layout."""
    kind = _pick(rng, SCENE_KINDS, cfg.scene_kind_weights)
    light, sky, haze = _light(rng, cfg)
    road, lanes, parking = _road(rng, kind, cfg)
    scene = Scene(camera=camera, kind=kind, road=road, light=light, sky=sky, haze=haze, buildings=_buildings(rng, road))
    placer = _Placer()
    _vehicles(rng, scene, placer, cfg, lanes, parking)
    _people(rng, scene, placer, cfg)
    _clutter(rng, scene, placer, cfg)
    return scene
