"""A detector's predictions beside the ground truth, coloured by what the KITTI evaluation makes of each box
(`edgekd show`): true positive, false positive, missed, or ignored (DontCare, too small, occluded or truncated for
the difficulty, neighbouring class). The outcomes come from the evaluator's own matching
(`edgekd.evaluate.kitti.match_image`; the rules: docs/kitti-evaluation.md). numpy and PIL only, no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from edgekd.atomic import atomic_output
from edgekd.data.images import load_rgb
from edgekd.data.records import Dataset, Detections, ImageRecord, LabeledObject
from edgekd.errors import EdgeKDError
from edgekd.evaluate import detections_to_objects
from edgekd.evaluate.kitti import MIN_OVERLAP, ImageMatch, Outcome, match_image

OUTCOME_COLOURS: dict[str, tuple[int, int, int]] = {
    "tp": (40, 200, 60),
    "fp": (235, 50, 50),
    "missed": (255, 150, 0),
    "ignored": (150, 150, 150),
}
OUTCOME_NAMES = {"tp": "true positive", "fp": "false positive", "missed": "missed", "ignored": "ignored"}
MAX_SHEET_WIDTH = 2560
MIN_PANEL_WIDTH = 640  # small images are enlarged to this width so labels stay legible
GAP = 6
LEGEND_HEIGHT = 24
CAPTION_HEIGHT = 18
_DRAW_ORDER = {"ignored": 0, "missed": 1, "fp": 1, "tp": 2}  # ignored boxes underneath, true positives on top


@dataclass
class JudgedImage:
    """One image, its detections at or above the score threshold, and their KITTI outcomes."""

    record: ImageRecord
    detections: list[LabeledObject]
    match: ImageMatch

    @property
    def errors(self) -> int:
        """Misses plus false positives."""
        return self.match.count("missed") + self.match.count("fp")


@dataclass(frozen=True)
class Panel:
    """Where one image's panel lies on the sheet: `side` "truth" or "predictions", top-left (x, y), and the
    factor from image pixels to sheet pixels."""

    image_id: str
    side: str
    x: int
    y: int
    scale: float

    def to_sheet(self, px: float, py: float) -> tuple[float, float]:
        """Sheet coordinates of image pixel (px, py)."""
        return self.x + px * self.scale, self.y + py * self.scale


@dataclass
class OutcomeSheet:
    image: Image.Image
    panels: list[Panel]


def evaluated_classes(dataset: Dataset) -> tuple[str, ...]:
    """The dataset's classes that the KITTI benchmark evaluates; refuses data the KITTI rules do not apply to."""
    if dataset.format != "kitti":
        raise EdgeKDError(f"{dataset.root}: outcomes follow the KITTI rules, which need KITTI-format data (label_2)")
    classes = tuple(c for c in dataset.classes if c in MIN_OVERLAP)
    if not classes:
        raise EdgeKDError(
            f"{dataset.root}: the model's classes {list(dataset.classes)} include none the KITTI benchmark evaluates "
            f"({', '.join(MIN_OVERLAP)})"
        )
    return classes


def judge_images(
    dataset: Dataset, predictions: Mapping[str, Detections], score: float, difficulty: str = "moderate"
) -> list[JudgedImage]:
    """KITTI outcomes of the detections scoring at least `score` on each image of `dataset` that has predictions,
    in dataset order."""
    classes = evaluated_classes(dataset)
    judged = []
    for record in dataset.records:
        if record.image_id not in predictions:
            continue
        objects = detections_to_objects(predictions[record.image_id], dataset.classes)
        kept = [o for o in objects if o.score is not None and o.score >= score]
        match = match_image(record.objects, kept, classes, difficulty, record.image_id)
        judged.append(JudgedImage(record, kept, match))
    return judged


def worst_images(judged: Sequence[JudgedImage], n: int) -> list[JudgedImage]:
    """The n images with the most misses plus false positives (ties in dataset order)."""
    return sorted(judged, key=lambda image: -image.errors)[:n]


def _label(draw: ImageDraw.ImageDraw, box, text: str, colour, font, height: float) -> None:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    tx = box[0]
    ty = box[1] - (bottom - top) - 3
    if ty < 0:
        ty = min(box[3], height - (bottom - top) - 3)
    draw.rectangle((tx, ty, tx + right - left + 3, ty + bottom - top + 3), fill=colour)
    draw.text((tx + 1 - left, ty + 1 - top), text, fill=(0, 0, 0), font=font)


def _draw_panel(image: Image.Image, objects: Sequence[LabeledObject], outcomes: Sequence[Outcome], scale: float):
    """`image` (already resized by `scale`) with each object's box in its outcome's colour; counted boxes are
    labelled with class (and score), ignored ones drawn thin and unlabelled."""
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(9, int(round(12 * max(scale, 0.8)))))
    width = max(2, int(round(2 * scale)))
    order = sorted(range(len(objects)), key=lambda i: _DRAW_ORDER[outcomes[i].kind])
    for i in order:
        obj, outcome = objects[i], outcomes[i]
        box = tuple(v * scale for v in obj.bbox)
        colour = OUTCOME_COLOURS[outcome.kind]
        draw.rectangle(box, outline=colour, width=1 if outcome.kind == "ignored" else width)
        if outcome.kind != "ignored":
            text = obj.type if obj.score is None else f"{obj.type} {obj.score:.2f}"
            _label(draw, box, text, colour, font, image.height)
    return image


def _legend(draw: ImageDraw.ImageDraw, font, difficulty: str, score: float) -> None:
    x = 6
    text = f"KITTI {difficulty}, score >= {score:g}:"
    draw.text((x, 5), text, fill=(230, 230, 230), font=font)
    x += int(draw.textlength(text, font=font)) + 12
    for kind, name in OUTCOME_NAMES.items():
        draw.rectangle((x, 6, x + 14, 18), fill=OUTCOME_COLOURS[kind])
        draw.text((x + 19, 5), name, fill=(230, 230, 230), font=font)
        x += 19 + int(draw.textlength(name, font=font)) + 14


def _caption(image: JudgedImage) -> tuple[str, str]:
    gt = image.match.ground_truth
    dets = image.match.detections
    ignored_gt = sum(o.kind == "ignored" for o in gt)
    ignored_det = sum(o.kind == "ignored" for o in dets)
    truth = (
        f"{image.record.image_id}  ground truth: {image.match.count('tp')} found, "
        f"{image.match.count('missed')} missed, {ignored_gt} ignored"
    )
    predictions = f"predictions: {image.match.count('tp')} TP, {image.match.count('fp')} FP, {ignored_det} ignored"
    return truth, predictions


def render_outcomes(
    judged: Sequence[JudgedImage], difficulty: str, score: float, max_width: int = MAX_SHEET_WIDTH
) -> OutcomeSheet:
    """One row per image: the ground truth (found / missed / ignored) on the left, the predictions (true
    positive / false positive / ignored, with class and score) on the right; a colour legend on top."""
    if not judged:
        raise EdgeKDError("no images to draw")
    tile_w = max(image.record.width for image in judged)
    tile_h = max(image.record.height for image in judged)
    scale = min((max_width - GAP) / (2 * tile_w), max(1.0, MIN_PANEL_WIDTH / tile_w))
    cell_w, cell_h = int(round(tile_w * scale)), int(round(tile_h * scale))
    row_h = CAPTION_HEIGHT + cell_h + GAP
    sheet = Image.new("RGB", (2 * cell_w + GAP, LEGEND_HEIGHT + len(judged) * row_h), (25, 25, 25))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    _legend(draw, font, difficulty, score)
    panels = []
    for row, image in enumerate(judged):
        y = LEGEND_HEIGHT + row * row_h
        picture = load_rgb(image.record.image_path)
        size = (max(1, int(round(picture.width * scale))), max(1, int(round(picture.height * scale))))
        picture = picture.resize(size, Image.BILINEAR)
        sides = (
            ("truth", image.record.objects, image.match.ground_truth),
            ("predictions", image.detections, image.match.detections),
        )
        for column, ((side, objects, outcomes), text) in enumerate(zip(sides, _caption(image), strict=True)):
            x = column * (cell_w + GAP)
            sheet.paste(_draw_panel(picture.copy(), objects, outcomes, scale), (x, y + CAPTION_HEIGHT))
            draw.text((x + 4, y + 3), text, fill=(230, 230, 230), font=font)
            panels.append(Panel(image.record.image_id, side, x, y + CAPTION_HEIGHT, scale))
    return OutcomeSheet(sheet, panels)


def check_sheet_path(path: str | Path, option: str = "-o") -> Path:
    """The sheet's file name: a .png that is not a folder (checked before any prediction runs)."""
    path = Path(path)
    if path.is_dir():
        raise EdgeKDError(f"{option} {path}: is a folder; give the PNG's file name")
    if path.suffix.lower() != ".png":
        raise EdgeKDError(f"{option} {path}: the predictions sheet is written as .png (exact outcome colours)")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise EdgeKDError(f"{option} {path}: is under {parent}, which is a file")
    return path


def save_outcomes(judged: Sequence[JudgedImage], path: str | Path, difficulty: str, score: float) -> OutcomeSheet:
    """Render the sheet and write it as a PNG at `path`, atomically (a failed write leaves no file)."""
    path = check_sheet_path(path)
    sheet = render_outcomes(judged, difficulty, score)
    with atomic_output(path) as temporary:
        sheet.image.save(temporary, format="PNG")
    return sheet
