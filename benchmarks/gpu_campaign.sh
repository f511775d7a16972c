#!/usr/bin/env bash
# Complete the GPU KD table in one short GPU run: the missing cells of the gpu preset, several side by side on one
# GPU, most informative first (no KD, the best single method, combined; 3 seeds each), then the other rows. Every
# finished cell is stored in benchmarks/results/cells/ (committed), so the next GPU run continues where this one
# stopped. The GPU machine has torch, torchvision, onnx, onnxruntime, rich, typer and numpy but no package index:
# the other dependencies come from wheels prepared here beforehand.
#
#   bash benchmarks/gpu_campaign.sh --prepare          # here, with PyPI: wheels into benchmarks/cache/wheels/
#   bash benchmarks/gpu_campaign.sh                    # on the GPU machine (carry benchmarks/cache/wheels)
#
# Options (environment): BUDGET_MINUTES (no cell starts after it; default 7), JOBS (cells side by side; default 4),
# SEEDS (default 3), PRESET (default gpu; `smoke` checks the script on a CPU), OUT (where the new cells and the
# table are copied; default: none, they stay in benchmarks/results/).
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=benchmarks/cache/wheels
NEEDED=(pycocotools pyyaml onnxslim matplotlib pillow)

if [[ "${1:-}" == "--prepare" ]]; then
    # Binary wheels for the Pythons a GPU machine may have; pip resolves their dependencies for each.
    for version in 3.10 3.11 3.12; do
        python3 -m pip download --only-binary=:all: --python-version "$version" --platform manylinux2014_x86_64 \
            --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 -d "$WHEELS" "${NEEDED[@]}"
    done
    echo "wheels in $WHEELS: carry this folder to the GPU machine"
    exit 0
fi

PRESET=${PRESET:-gpu}
BUDGET_MINUTES=${BUDGET_MINUTES:-7}
JOBS=${JOBS:-4}
SEEDS=${SEEDS:-3}

missing=$(python3 - <<'EOF'
import importlib.util
modules = {"pycocotools": "pycocotools", "pyyaml": "yaml", "onnxslim": "onnxslim", "matplotlib": "matplotlib",
           "pillow": "PIL", "torch": "torch", "torchvision": "torchvision", "onnxruntime": "onnxruntime"}
print(" ".join(name for name, module in modules.items() if importlib.util.find_spec(module) is None))
EOF
)
if [[ -n "$missing" ]]; then
    python3 -m pip install --no-index --find-links "$WHEELS" $missing || {
        echo "error: missing $missing and no usable wheel in $WHEELS (run: bash benchmarks/gpu_campaign.sh --prepare)" >&2
        exit 2
    }
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # edgekd from this checkout, installed or not

stamp=$(mktemp)
started=$(date +%s)

copy_out() {  # the cells this run stored (new or retrained teachers) and the tables, for the caller to take home
    [[ -n "${OUT:-}" ]] || return 0
    mkdir -p "$OUT/cells"
    find benchmarks/results/cells -name '*.json' -newer "$stamp" -exec cp {} "$OUT/cells/" \;
    cp benchmarks/results/kd_table_"$PRESET".* "$OUT/" 2>/dev/null || true
}

# Priority order: the rows that answer "does KD help" first (no KD, the pair's best single method on the CPU
# table, combined), inside one budget shared by both pairs; cells already stored are not run again.
run_pair() {  # pair, methods
    local left=$(( BUDGET_MINUTES - ($(date +%s) - started) / 60 ))
    (( left > 0 )) || return 0
    python3 benchmarks/kd_table.py --preset "$PRESET" --pairs "$1" --seeds "$SEEDS" --jobs "$JOBS" \
        --methods "$2" --budget-minutes "$left"
    copy_out
}
run_pair one-stage "no KD,ssim,combined,fgfi,gkd+bmfi,global,fitnet,logits"
run_pair two-stage "no KD,global,combined,fgfi,ssim,gkd+bmfi,fitnet,logits"

python3 benchmarks/kd_table.py --preset "$PRESET" --pairs one-stage,two-stage --seeds "$SEEDS" --available || true
copy_out
echo "GPU campaign: $(( ($(date +%s) - started) / 60 )) min; cells stored by this run:"
find benchmarks/results/cells -name '*.json' -newer "$stamp" -printf '  %f\n'
