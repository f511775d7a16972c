"""Helpers for benchmark scripts: where results go and how the regenerating command is recorded."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(__file__).resolve().parent / "cache"
REPO = Path(__file__).resolve().parent.parent


def command_line() -> str:
    """The exact command that ran this script, relative to the repository root."""
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0]), *sys.argv[1:]])


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"


def commit() -> str:
    """The edgekd commit the results come from, with "-dirty" when tracked code differs from it (uncommitted
    changes under edgekd/, benchmarks/ or recipes/); "unknown" outside a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", "edgekd", "benchmarks/*.py", "recipes")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if changed else "")


def write_results(stem: str, payload: dict, markdown: str) -> tuple[Path, Path]:
    """benchmarks/results/<stem>.json and .md, each saying how it was made."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"command": command_line(), "machine": machine(), "commit": commit(), **payload}
    json_path, md_path = RESULTS / f"{stem}.json", RESULTS / f"{stem}.md"
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    md_path.write_text(
        f"{markdown}\n\nRegenerate: `{payload['command']}` ({payload['machine']}, edgekd {payload['commit']})\n"
    )
    return json_path, md_path


def write_figure_results(stem: str, payload: dict, lines: list[str], figure: Figure, caption: str) -> None:
    """benchmarks/results/<stem>.png, .json and .md (the figure shown under the markdown), and the markdown printed."""
    import matplotlib.pyplot as plt

    RESULTS.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(RESULTS / f"{stem}.png", dpi=100)
    plt.close(figure)
    lines = [*lines, "", f"![{caption}]({stem}.png)"]
    write_results(stem, payload, "\n".join(lines))
    print("\n".join(lines))
