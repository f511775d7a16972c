"""The README's CPU sweep: `edgekd sweep` on the CPU preset's data with the KD table's GFL teacher (the cached
teacher cell of the cpu preset's one-stage-gfl pair, trained here if missing), ONNX Runtime on this CPU, batch 1.

    python benchmarks/sweep_cpu.py --budget "p99<=30ms"

The sweep runs in benchmarks/cache/sweep_cpu/ (candidates, runs and stage caches, git-ignored: rerun the same
command to continue an interrupted sweep); its sweep.md, sweep.json and front.png are copied to
benchmarks/results/sweep_cpu.{md,json,png} with the command and commit. Time it on a machine with nothing else
running: stage 1's latencies are the budget's evidence.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, RESULTS, write_results  # noqa: E402
from kd_cells import Cell, data_root, run_cell  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", action="append", required=True, help="as edgekd sweep --budget (repeatable)")
    parser.add_argument("--img-sizes", default="416x128,320x96", help="the sweep's input sizes (WxH,WxH)")
    parser.add_argument(
        "--backbones", default="resnet18,mobilenet_v3", help="the sweep's student backbones (the measured table's)"
    )
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4, help="stage 2 distillation epochs")
    parser.add_argument("--iters", type=int, default=200, help="stage 1 timed calls per phase")
    args = parser.parse_args()

    console = Console()
    teacher_cell = Cell("cpu", "one-stage-gfl", "teacher")
    run_cell(teacher_cell, console, need_checkpoint=True)
    teacher = teacher_cell.directory() / "best.pt"
    out = CACHE / "sweep_cpu"
    command = [
        "edgekd", "sweep", "--teacher", str(teacher), "--data", str(data_root("cpu")), "-o", str(out),
        "--backend", "ort-cpu", "--batch", "1", "--img-sizes", args.img_sizes, "--backbones", args.backbones,
        "--top", str(args.top),
        "--epochs", str(args.epochs), "--iters", str(args.iters), "--device", "cpu",
        *[part for budget in args.budget for part in ("--budget", budget)],
    ]  # fmt: skip
    console.print("$ " + shlex.join(command))
    subprocess.run([sys.executable, "-m", "edgekd", *command[1:]], check=True)

    sweep = json.loads((out / "sweep.json").read_text())
    shutil.copyfile(out / "front.png", RESULTS / "sweep_cpu.png")
    repo = Path(__file__).resolve().parent.parent
    shown = shlex.join(command).replace(str(repo) + "/", "")
    markdown = (out / "sweep.md").read_text().replace(str(repo) + "/", "").replace("front.png", "sweep_cpu.png")
    header = f"Sweep command (run by this script): `{shown}`\n\n"
    write_results("sweep_cpu", {"sweep_command": shown, "sweep": sweep}, header + markdown.rstrip())


if __name__ == "__main__":
    main()
