#!/usr/bin/env bash
# The GPU KD table in short GPU runs: the missing cells of a GPU preset, several side by side on one GPU, most
# informative first (per pair: the teacher with the no-KD students beside it, the single methods, then the rows
# chosen on validation), and stops starting cells after BUDGET_MINUTES. Every finished cell is stored in
# benchmarks/results/cells/ (committed), so the next GPU run continues where this one stopped; a teacher whose
# students are still to run is trained again on each GPU machine (its checkpoint stays there). The GPU machine has
# torch, torchvision, onnx, onnxruntime, rich, typer and numpy but no package index: the other dependencies come
# from wheels prepared here beforehand.
#
#   bash benchmarks/gpu_campaign.sh --prepare          # here, with PyPI: wheels into benchmarks/cache/wheels/
#   OUT=... bash benchmarks/gpu_campaign.sh            # on the GPU machine (carry benchmarks/cache/wheels)
#   tar xzf campaign.tar.gz                            # here, in the repository root: the cells and tables it made
#
# Options (environment): PRESET (default gpu-conv, the convergence preset; gpu is the 6-epoch table; smoke checks
# the script on a CPU), BUDGET_MINUTES (no cell starts after it; default 7), STOP_MINUTES (the training is stopped
# then, so that the results are packed before the GPU run's own limit; default 9), JOBS (cells side by side;
# default 4), SEEDS (default 3), PAIRS (default: the preset's pairs, in its order), OUT (where
# campaign.tar.gz goes: the cells this run stored, the tables, the convergence report, and the per-epoch
# metrics.csv of every cell it trained, finished or not; one file, as a GPU machine may send back only a few).
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

PRESET=${PRESET:-gpu-conv}
BUDGET_MINUTES=${BUDGET_MINUTES:-7}
STOP_MINUTES=${STOP_MINUTES:-9}
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
PAIRS=${PAIRS:-$(cd benchmarks && python3 -c "from kd_cells import PRESETS; print(','.join(PRESETS['$PRESET'].pairs))")}

stamp=$(mktemp)
started=$(date +%s)

pack() {  # everything this run made, in one archive for the caller to take home
    [[ -n "${OUT:-}" ]] || return 0
    mkdir -p "$OUT"
    local list
    list=$(mktemp)
    {
        find benchmarks/results/cells -name '*.json' -newer "$stamp" 2>/dev/null || true
        find benchmarks/cache/cells -name metrics.csv -newer "$stamp" 2>/dev/null || true
        ls benchmarks/results/kd_table_"$PRESET".* benchmarks/results/convergence_"$PRESET".* 2>/dev/null || true
    } >"$list"
    tar czf "$OUT/campaign.tar.gz" -T "$list"
    echo "packed $(wc -l <"$list") files into $OUT/campaign.tar.gz"
}
trap pack EXIT

# Priority order: per pair, the teacher with the no-KD students beside it (they measure convergence), the single
# methods (the pair's best on the CPU table first), then the rows chosen on validation once those are stored; one
# pair after the other inside one budget; cells already stored are not run again. `timeout` stops the whole
# process group at STOP_MINUTES, so the archive is written before the GPU run's own limit.
run_pair() {  # pair, methods
    local elapsed=$(( $(date +%s) - started ))
    local left=$(( BUDGET_MINUTES * 60 - elapsed )) stop=$(( STOP_MINUTES * 60 - elapsed ))
    (( left > 0 && stop > 0 )) || return 0
    local rc=0
    timeout -k 20 "$stop" python3 benchmarks/kd_table.py --preset "$PRESET" --pairs "$1" --seeds "$SEEDS" \
        --jobs "$JOBS" --methods "$2" --budget-minutes "$(( left / 60 )).$(( left % 60 * 10 / 60 ))" || rc=$?
    if (( rc == 124 || rc == 137 )); then
        echo "stopped at STOP_MINUTES=$STOP_MINUTES: the cells still training start again on the next GPU run"
    elif (( rc != 0 )); then
        exit "$rc"
    fi
}
for pair in ${PAIRS//,/ }; do
    case "$pair" in
        two-stage) singles="global,ssim,fgfi,gkd+bmfi,fitnet,logits" ;;
        *) singles="ssim,fgfi,logits,global,gkd+bmfi,fitnet" ;;
    esac
    run_pair "$pair" "no KD,$singles,best single,combined,inherit only,best single (inherit),combined (inherit)"
done

python3 benchmarks/kd_table.py --preset "$PRESET" --pairs "$PAIRS" --seeds "$SEEDS" --available || true
python3 benchmarks/convergence.py --preset "$PRESET" --pairs "$PAIRS" --seeds "$SEEDS" || true
echo "GPU campaign: $(( ($(date +%s) - started) / 60 )) min; cells stored by this run:"
find benchmarks/results/cells -name '*.json' -newer "$stamp" -printf '  %f\n'
