"""`edgekd data synth | stats | show`: render the built-in synthetic set, summarise a dataset, look at it."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgekd.console import print_table
from edgekd.data.kitti import BadBoxWarning
from edgekd.data.loader import BAD_BOX_POLICIES, load_dataset
from edgekd.data.records import Dataset
from edgekd.errors import EdgeKDError
from edgekd.options import parse_size


def _load(path: str, split: str, on_bad_box: str, console: Console) -> Dataset:
    """load_dataset, printing any bad-box report (on_bad_box='warn') instead of a Python warning."""
    if on_bad_box not in BAD_BOX_POLICIES:
        raise EdgeKDError(f"--bad-boxes: expected one of {', '.join(BAD_BOX_POLICIES)}, got {on_bad_box!r}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BadBoxWarning)
        dataset = load_dataset(path, split=split, on_bad_box=on_bad_box)
    for warning in caught:
        if issubclass(warning.category, BadBoxWarning):
            console.print(f"[yellow]warning:[/] {escape(str(warning.message))}", highlight=False, soft_wrap=True)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return dataset


def synth(
    out: Path = typer.Argument(
        ..., help="Output directory (KITTI layout: image_2/, label_2/, calib/, ImageSets/); other files stay."
    ),
    train: int = typer.Option(1000, "--train", help="Training images (ids 000000...)."),
    val: int = typer.Option(200, "--val", help="Validation images (the ids after the training ones)."),
    test: int = typer.Option(
        0, "--test", help="Held-out test images (ImageSets/test.txt, the ids after the validation ones)."
    ),
    size: str = typer.Option("1242x375", "--size", help="Image size WIDTHxHEIGHT (KITTI: 1242x375)."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same bytes."),
    workers: int = typer.Option(min(4, os.cpu_count() or 1), "--workers", help="Parallel processes."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace image_2/ label_2/ calib/ ImageSets/ in OUT once the new set is complete."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Render synthetic KITTI-like driving scenes as real KITTI files.

    An OUT that already holds a dataset is refused unless --overwrite; a failed run leaves OUT as it was.
    """
    from edgekd.data.synth import render_dataset

    height, width = parse_size(size, "--size")
    summary = render_dataset(
        out, train, val, size=(width, height), seed=seed, workers=workers, progress=not quiet, overwrite=overwrite,
        n_test=test,
    )  # fmt: skip
    if quiet:
        return
    n = summary.n_train + summary.n_val + summary.n_test
    per_image = ", ".join(f"{name} {count / n:.2f}" for name, count in summary.counts.items())
    console = Console()
    console.print(
        f"wrote {n} images ({summary.n_train} train, {summary.n_val} val"
        + (f", {summary.n_test} test" if summary.n_test else "")
        + f") to {escape(str(out))} "
        f"in {summary.seconds:.1f} s; labels per image: {per_image}",
        highlight=False,
        soft_wrap=True,
    )


def _bar(count: int, largest: int, width: int = 40) -> str:
    return "█" * (round(width * count / largest) if largest else 0)


def stats(
    path: str = typer.Argument(..., help="KITTI directory, COCO .json, or directory with annotations/."),
    split: str = typer.Option("train", "--split", help="ImageSets/<split>.txt, 'all', or the COCO split."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
    bad_boxes: str = typer.Option(
        "warn", "--bad-boxes", help="Zero/negative-size or out-of-image boxes: 'warn' (list) or 'error'."
    ),
) -> None:
    """Class counts, KITTI difficulty counts, box-height histogram, occlusion and truncation."""
    from edgekd.data.stats import DIFFICULTIES, compute_stats

    console = Console()
    dataset = _load(path, split, bad_boxes, Console(stderr=True))
    result = compute_stats(dataset)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    n = max(1, result.n_images)
    console.print(f"{escape(path)} ({dataset.format}), split {escape(dataset.split)}", highlight=False, soft_wrap=True)
    classes = Table(title=f"{result.n_images} images")
    for column in ("type", "objects", "per image", "images with"):
        classes.add_column(column, justify="left" if column == "type" else "right")
    for name, count in result.class_counts.items():
        classes.add_row(name, str(count), f"{count / n:.2f}", str(result.images_with.get(name, 0)))
    print_table(console, classes)

    levels = Table(title="KITTI difficulty (height > min px, occluded <= max, truncated <= max)")
    levels.add_column("class")
    for level, (min_h, max_occ, max_trunc) in DIFFICULTIES.items():
        levels.add_column(f"{level}\n(>{min_h:g} px, occ<={max_occ}, trunc<={max_trunc:g})", justify="right")
    for name, counts in result.difficulty.items():
        levels.add_row(name, *(str(counts[level]) for level in DIFFICULTIES))
    print_table(console, levels)

    hist = Table(title="box height (px, DontCare excluded)")
    hist.add_column("height")
    hist.add_column("boxes", justify="right")
    hist.add_column("")
    largest = max(result.height_hist, default=0)
    for label, count in zip(result.height_bins, result.height_hist, strict=True):
        hist.add_row(label, str(count), _bar(count, largest))
    print_table(console, hist)
    occluded = ", ".join(f"{level}: {fraction:.1%}" for level, fraction in result.occluded_fractions.items())
    console.print(
        f"height < 40 px: {result.small_fraction:.1%}; occluded levels: {occluded}; "
        f"truncated > 0: {result.truncated_fraction:.1%}",
        highlight=False,
        soft_wrap=True,
    )


def show(
    path: str = typer.Argument(..., help="KITTI directory, COCO .json, or directory with annotations/."),
    split: str = typer.Option("train", "--split", help="ImageSets/<split>.txt, 'all', or the COCO split."),
    n: int = typer.Option(8, "--n", "-n", help="Number of images."),
    output: Path = typer.Option(Path("grid.png"), "--output", "-o", help="Grid image to write (.png/.jpg)."),
    seed: int | None = typer.Option(None, "--seed", help="Pick images at random with this seed (default: first n)."),
    columns: int = typer.Option(2, "--columns", help="Images per grid row."),
    bad_boxes: str = typer.Option(
        "warn", "--bad-boxes", help="Zero/negative-size or out-of-image boxes: 'warn' (list) or 'error'."
    ),
) -> None:
    """Draw boxes and labels on dataset images and tile them into one image."""
    from edgekd.data.show import save_grid

    console = Console()
    dataset = _load(path, split, bad_boxes, Console(stderr=True))
    written = save_grid(dataset, output, n=n, seed=seed, columns=columns)
    console.print(f"wrote {written} ({min(n, len(dataset))} images)", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the `data` sub-app (synth, stats, show) to the main CLI."""
    data_app = typer.Typer(
        no_args_is_help=True, help="Datasets: render synthetic KITTI-like scenes, print statistics, draw boxes."
    )
    data_app.command("synth")(synth)
    data_app.command("stats")(stats)
    data_app.command("show")(show)
    app.add_typer(data_app, name="data")
