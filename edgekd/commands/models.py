"""`edgekd models`: the zoo with parameters and GFLOPs at an input size."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from edgekd.commands.options import parse_size


def models_command(
    img_size: Annotated[str, typer.Option("--img-size", help="Input WIDTHxHEIGHT for GFLOPs.")] = "640x192",
    num_classes: Annotated[int, typer.Option("--num-classes", min=1, help="Classes of the head.")] = 3,
) -> None:
    """List the zoo: family, backbone, width, role, parameters and GFLOPs."""
    from edgekd.models.complexity import count_parameters, gflops
    from edgekd.models.detector import DetectorConfig
    from edgekd.models.zoo import ZOO, build_detector

    input_size = parse_size(img_size)
    table = Table(title=f"edgekd zoo at {img_size} (GFLOPs: multiply-add = 2 FLOPs)")
    for column in ("name", "family", "backbone", "FPN/head width", "role", "params (M)", "GFLOPs"):
        table.add_column(column, justify="right" if column in ("params (M)", "GFLOPs") else "left")
    classes = tuple(f"class{i}" for i in range(num_classes))
    for name, spec in ZOO.items():
        detector = build_detector(DetectorConfig(name, classes, input_size))
        table.add_row(
            name,
            spec.family,
            spec.backbone,
            str(spec.width),
            spec.role,
            f"{count_parameters(detector) / 1e6:.2f}",
            f"{gflops(detector):.2f}",
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("models", help="List the model zoo with params and GFLOPs.")(models_command)
