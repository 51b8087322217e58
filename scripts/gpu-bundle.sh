#!/usr/bin/env bash
# What a GPU host without Rust needs, in one folder: the release binary, the Vulkan loader and
# the launcher (../shared/gpu/bundle), and MiniLM's tokenizer.json for the speed run on seeded
# weights (the 90 MB weights stay behind). Checks that it stays under the device runner's 64 MiB.
#   bash scripts/gpu-bundle.sh [OUTDIR]        (default .gpu; then: bash scripts/gpu-check.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.gpu}
bin=target/release/resformer
[ -x "$bin" ] || { echo "gpu-bundle: no $bin; run cargo build --release first" >&2; exit 1; }
bundle=../shared/gpu/bundle
[ -x "$bundle" ] || [ -f "$bundle" ] || { echo "gpu-bundle: $bundle not found (the workplace's bundler)" >&2; exit 1; }
rm -rf "$out"
bash "$bundle" "$out" "$bin"
bash scripts/fetch-minilm.sh >&2
cp models/all-MiniLM-L6-v2/tokenizer.json "$out/tokenizer.json"
size=$(du -sb "$out" | cut -f1)
limit=$((64 * 1024 * 1024))
echo "gpu-bundle: $out is $((size / 1024 / 1024)) MiB ($(ls "$out" | tr '\n' ' '))"
if [ "$size" -gt "$limit" ]; then
    echo "gpu-bundle: over the 64 MiB a device run carries" >&2
    exit 1
fi
