"""`edgekd models`: the zoo with parameters and GFLOPs at an input size."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from edgekd.console import print_table
from edgekd.options import parse_size

COLUMNS = {  # JSON key -> table column
    "name": "name",
    "family": "family",
    "backbone": "backbone",
    "width": "FPN/head width",
    "role": "role",
    "params_m": "params (M)",
    "gflops": "GFLOPs",
}


def models_command(
    img_size: Annotated[str, typer.Option("--img-size", help="Input WIDTHxHEIGHT for GFLOPs.")] = "640x192",
    num_classes: Annotated[int, typer.Option("--num-classes", min=1, help="Classes of the head.")] = 3,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the zoo as JSON (a list of objects, keys as in the table).")
    ] = False,
) -> None:
    """List the zoo: family, backbone, width, role, parameters and GFLOPs."""
    from edgekd.models.complexity import count_parameters, gflops
    from edgekd.models.detector import DetectorConfig
    from edgekd.models.zoo import ZOO, build_detector

    input_size = parse_size(img_size)
    classes = tuple(f"class{i}" for i in range(num_classes))
    rows = []
    for name, spec in ZOO.items():
        detector = build_detector(DetectorConfig(name, classes, input_size))
        rows.append(
            {
                "name": name,
                "family": spec.family,
                "backbone": spec.backbone,
                "width": spec.width,
                "role": spec.role,
                "params_m": round(count_parameters(detector) / 1e6, 4),
                "gflops": round(gflops(detector), 4),
            }
        )
    if as_json:
        height, width = input_size
        typer.echo(json.dumps({"img_size": f"{width}x{height}", "num_classes": num_classes, "models": rows}, indent=2))
        return
    table = Table(title=f"edgekd zoo at {img_size} (GFLOPs: multiply-add = 2 FLOPs)")
    for key, column in COLUMNS.items():
        table.add_column(column, justify="right" if key in ("params_m", "gflops") else "left")
    for row in rows:
        table.add_row(*(f"{row[key]:.2f}" if isinstance(row[key], float) else str(row[key]) for key in COLUMNS))
    print_table(Console(), table)


def register(app: typer.Typer) -> None:
    app.command("models", help="List the model zoo with params and GFLOPs.")(models_command)
