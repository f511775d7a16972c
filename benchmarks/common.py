"""Helpers for benchmark scripts: where results go and how the regenerating command is recorded."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(__file__).resolve().parent / "cache"


def command_line() -> str:
    """The exact command that ran this script, relative to the repository root."""
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0]), *sys.argv[1:]])


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"


def write_results(stem: str, payload: dict, markdown: str) -> tuple[Path, Path]:
    """benchmarks/results/<stem>.json and .md, each saying how it was made."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"command": command_line(), "machine": machine(), **payload}
    json_path, md_path = RESULTS / f"{stem}.json", RESULTS / f"{stem}.md"
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    md_path.write_text(f"{markdown}\n\nRegenerate: `{payload['command']}` ({payload['machine']})\n")
    return json_path, md_path
