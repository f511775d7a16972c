"""Every knob of the synthetic scene generator, in one dataclass, so difficulty can be tuned without code surgery.

Lengths are metres in KITTI camera coordinates (x right, y down, z forward); pixel sizes are given at the
full KITTI resolution (375 rows) and scaled with the image height.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SynthConfig:
    """Scene, labelling and appearance parameters of `render_scene` (defaults tuned to KITTI statistics)."""

    # Camera (KITTI P2 at 1242x375; scaled with the image size) and its mounting.
    focal: float = 721.5377
    principal_x: float = 609.5593
    principal_y: float = 172.854
    camera_height: float = 1.65
    camera_height_jitter: float = 0.04
    pitch_jitter: float = 0.01  # tan(pitch) range of the ground plane: moves the horizon a few pixels

    # Scene kinds (urban / suburban / highway) change the rates below through per-kind multipliers.
    scene_kind_weights: tuple[float, float, float] = (0.5, 0.32, 0.18)

    # Objects: mean counts per image before the visibility rules (labels end up lower).
    moving_cars_per_lane: float = 0.85
    parked_rows_mean: float = 1.0  # rows of parked cars per parking strip (urban/suburban)
    parked_row_length_mean: float = 2.7
    van_fraction: float = 0.09
    pedestrian_scene_prob: float = 0.32  # images with any pedestrian
    pedestrian_groups_mean: float = 0.5  # extra groups (Poisson) beyond the first, when any
    pedestrian_group_size_mean: float = 0.8  # extra members (Poisson) beyond the first
    pedestrian_crossing_prob: float = 0.15  # a group crossing the road instead of walking on a sidewalk
    cyclist_scene_prob: float = 0.28
    cyclists_extra_mean: float = 0.25
    far_objects_mean: float = 3.0  # distant traffic beyond max_label_depth, covered by DontCare boxes

    # Depths (z, m).
    min_depth: float = 4.5
    max_label_depth: float = 72.0  # farther objects are DontCare, as distant traffic is in KITTI
    far_depth: float = 140.0
    depth_power: float = 1.25  # z = min + (max - min) * u**power: > 1 puts more objects near

    # Labelling rules.
    min_label_height_px: float = 11.0  # amodal box height (at 375 rows) below which an object is DontCare
    min_visible_fraction: float = 0.08  # less of the silhouette visible: a DontCare region, not a label
    occlusion_levels: tuple[float, float, float] = (0.05, 0.55, 0.85)  # occluded fraction -> levels 1, 2, 3
    dontcare_pad_px: float = 3.0
    dontcare_merge_px: float = 2.0  # DontCare boxes closer than this are merged into one region

    # Clutter: mean counts per roadside (Poisson), before scene-kind multipliers.
    poles_per_side: float = 2.6
    trees_per_side: float = 2.4
    signs_per_side: float = 0.8
    bushes_per_side: float = 2.0
    bins_per_side: float = 0.9  # boxes / bins / cabinets painted like cars: confusers
    bollards_per_side: float = 0.8
    road_shadows_mean: float = 1.6
    building_prob: float = 0.6  # per side, before scene-kind multipliers
    crosswalk_prob: float = 0.12

    # Appearance.
    ambient_range: tuple[float, float] = (0.45, 0.75)
    exposure_range: tuple[float, float] = (0.7, 1.25)
    contrast_range: tuple[float, float] = (0.75, 1.2)
    colour_cast: float = 0.08  # max per-channel gain deviation (white balance)
    blur_sigma_range: tuple[float, float] = (0.0, 1.1)  # gaussian blur sigma at 375 rows
    motion_blur_prob: float = 0.2
    motion_blur_max_px: float = 6.0
    noise_sigma_range: tuple[float, float] = (1.5, 6.0)  # sensor noise, grey levels

    # Output.
    png_compress_level: int = 1  # zlib level (Huffman-only coding; the noisy images gain nothing from more)

    @classmethod
    def near_range(cls) -> SynthConfig:
        """Objects labelled out to 30 m only (farther traffic is DontCare): larger boxes, for CPU-sized runs at
        low input resolution where KITTI's many far, tiny objects would be a few pixels tall."""
        return cls(max_label_depth=30.0)
