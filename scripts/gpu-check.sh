#!/usr/bin/env bash
# One command on a Linux host with a GPU and a release binary, no Rust toolchain and no network
# needed; about 3-5 minutes on an H100. Prints the adapter, tunes the matmul family, runs the
# large benchmark (against PyTorch when python3 has torch with CUDA), MiniLM embedding speed
# (beside a PyTorch BERT of the same config), the PyTorch parity fixtures on the GPU, and one
# summary table last. Everything it prints is also kept under $GPU_CHECK_OUT (default
# $OUT/gpu-check when the device runner sets $OUT, else gpu-check-out/). It refuses to report when
# the adapter it would time is not on Vulkan, Metal or DX12 (a GL adapter has no subgroups and
# runs the old kernels: its numbers would mean nothing).
#
#   bash scripts/gpu-check.sh [BIN] [MODEL_DIR]
#
# BIN: the resformer binary, or a launcher and binary in one word list (default, also for "": "bash
#   .gpu/run resformer" when .gpu/run exists, from scripts/gpu-bundle.sh, else target/release/resformer).
# MODEL_DIR: all-MiniLM-L6-v2 (default models/all-MiniLM-L6-v2). Without its model.safetensors
#   (90 MB, often left behind), the speed run uses seeded random weights of the same shapes and
#   needs only MODEL_DIR/tokenizer.json (else .gpu/tokenizer.json).
# GPU_CHECK_SIZES (large), GPU_CHECK_BATCH (512) and GPU_CHECK_RUNS (10) shrink it for a dry run
#   on a software adapter: GPU_CHECK_SIZES=small GPU_CHECK_BATCH=4 GPU_CHECK_RUNS=2.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ -n "${1:-}" ]; then
    read -r -a bin <<<"$1"
elif [ -f .gpu/run ]; then
    bin=(bash .gpu/run resformer)
else
    bin=(target/release/resformer)
fi
model=${2:-models/all-MiniLM-L6-v2}
sizes=${GPU_CHECK_SIZES:-large}
batch=${GPU_CHECK_BATCH:-512}
runs=${GPU_CHECK_RUNS:-10}
if [ -n "${GPU_CHECK_OUT:-}" ]; then
    out=$GPU_CHECK_OUT
elif [ -n "${OUT:-}" ]; then
    out=$OUT/gpu-check
else
    out=gpu-check-out
fi
mkdir -p "$out"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
# the tuner's cache travels with the results, and a second run starts tuned
export RESFORMER_CACHE_DIR=${RESFORMER_CACHE_DIR:-$out/cache}
failures=()
step() { echo; echo "== $*"; }
run() { # run NAME CMD...: tee to $out/NAME.txt, remember a failure
    local name=$1; shift
    "$@" 2>&1 | tee "$out/$name.txt"
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] || failures+=("$name (exit $rc)")
}

step "adapter"
run devices "${bin[@]}" devices
adapter=$(grep -m1 '^\* = chosen for --device gpu:' "$out/devices.txt" | sed 's/^\* = chosen for --device gpu: //')
echo "adapter: ${adapter:-none}"
# the backend in the chosen line's "(Backend, Type)"
backend=$(sed -n 's/.*(\([A-Za-z0-9]*\), [A-Za-z]*)$/\1/p' <<<"$adapter")
case "$backend" in
    Vulkan|Metal|Dx12) ;;
    *)
        echo "gpu-check: refusing to report: the adapter is ${adapter:-none}, on ${backend:-no backend}, not Vulkan," \
            "Metal or DX12. On a headless NVIDIA host start through the bundle's launcher (bash .gpu/run," \
            "from scripts/gpu-bundle.sh), which points the Vulkan loader at NVIDIA's driver." | tee "$out/summary.txt" >&2
        exit 1 ;;
esac
case "$adapter" in
    *llvmpipe*|*lavapipe*|*SwiftShader*|*"Microsoft Basic"*|"")
        echo "gpu-check: WARNING: no hardware GPU chosen; these are not GPU numbers" ;;
esac

torch=no
if command -v python3 >/dev/null && python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    torch=yes
fi
echo "PyTorch with CUDA: $torch"

step "tune: every matmul tile per shape class (cached in $RESFORMER_CACHE_DIR)"
run tune "${bin[@]}" tune --sizes "$sizes" --runs 5

compare=()
if [ "$torch" = yes ]; then
    step "PyTorch baseline ($sizes)"
    run torch_baseline python3 scripts/torch_baseline.py --sizes "$sizes" --runs "$runs" --json "$out/torch.json"
    [ -s "$out/torch.json" ] && compare=(--compare "$out/torch.json")
fi

step "resformer bench --sizes $sizes"
# a small CPU budget: the plain-loop reference only where it takes seconds, not minutes
run bench "${bin[@]}" bench --sizes "$sizes" --runs "$runs" --cpu-budget 1e9 "${compare[@]}" --json "$out/bench.json"

step "the stack in the f16 mode (f16 matmul weights), beside PyTorch's f16 encoder"
case "$sizes" in
    large) stack=(--layers 12 --embed 768 --heads 12 --ff 3072 --seq 512 --batch 8) ;;
    *) stack=(--layers 2 --embed 128 --heads 4 --ff 512 --seq 32 --batch 2) ;;
esac
run f16 "${bin[@]}" run "${stack[@]}" --precision f16 --device gpu --runs 5
if [ "$torch" = yes ]; then
    run torch_f16 python3 scripts/torch_baseline.py --sizes "$sizes" --half --runs "$runs" --json "$out/torch_f16.json"
fi

step "MiniLM embedding speed, batch $batch"
speed=(embed --speed --device gpu --batch "$batch" --repeats 3)
if [ -f "$model/model.safetensors" ]; then
    run embed "${bin[@]}" "${speed[@]}" --model "$model"
else
    tok=$model
    [ -f "$tok/tokenizer.json" ] || tok=.gpu
    if [ -f "$tok/tokenizer.json" ]; then
        run embed "${bin[@]}" "${speed[@]}" --model "$tok" --random-weights
    else
        echo "gpu-check: no $model/model.safetensors or tokenizer.json: embedding speed skipped" | tee "$out/embed.txt"
        failures+=("embed (no model)")
    fi
fi
if [ "$torch" = yes ]; then
    run torch_bert python3 scripts/torch_baseline.py --minilm "$batch"
fi

step "PyTorch parity fixtures on the GPU"
run parity "${bin[@]}" parity --device gpu --dir tests/fixtures/block

step "summary"
{
    echo "adapter: ${adapter:-none}   (sizes $sizes, runs $runs, $(date -u +%Y-%m-%dT%H:%MZ))"
    if command -v python3 >/dev/null && [ -s "$out/bench.json" ]; then
        python3 - "$out/bench.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
print(f"{'case':<14} {'shape':<26} {'resformer ms':>13} {'torch ms':>10} {'ours/torch':>11} {'rate':>17}")
for r in rows:
    rate = f"{r['gflops']:.1f} GFLOP/s" if r.get("gflops") else (f"{r['gbps']:.1f} GB/s" if r.get("gbps") else "")
    ours, torch = r.get("gpu_ms"), r.get("torch_ms")
    fmt = lambda v: f"{v:.3f}" if v else "-"
    ratio = f"{r['ours_over_torch']:.2f}x" if r.get("ours_over_torch") else "-"
    print(f"{r['kernel']:<14} {r['shape']:<26} {fmt(ours):>13} {fmt(torch):>10} {ratio:>11} {rate:>17}")
PY
    fi
    grep -h "split-f16" "$out/devices.txt" 2>/dev/null
    grep -h "^forward:" "$out/f16.txt" 2>/dev/null | sed 's/^/f16 mode stack: /'
    grep -h "^stack" "$out/torch_f16.txt" 2>/dev/null | sed 's/^/torch f16: /'
    grep -h "sentences/s" "$out/embed.txt" "$out/torch_bert.txt" 2>/dev/null
    grep -h "^parity on" "$out/parity.txt" 2>/dev/null
    if [ ${#failures[@]} -gt 0 ]; then
        echo "FAILED: ${failures[*]}"
    else
        echo "all steps passed"
    fi
} | tee "$out/summary.txt"
[ ${#failures[@]} -eq 0 ]
