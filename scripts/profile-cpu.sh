#!/usr/bin/env bash
# Where the CPU backend's MiniLM forward goes: a release build with symbols (its own target dir,
# target/profile, so the stripped release build is left alone) under `perf record`, then the
# flat profile by symbol. Needs perf (Debian: linux-perf) and scripts/fetch-minilm.sh's model.
#   bash scripts/profile-cpu.sh [BATCH] [REPEATS]     (default 32 sentences of 128 tokens, 5 batches)
set -euo pipefail
cd "$(dirname "$0")/.."
batch=${1:-32}
repeats=${2:-5}
bash scripts/fetch-minilm.sh >&2
CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
    cargo build --quiet --release --target-dir target/profile -p resformer-cli
out=target/profile/perf.data
perf record -q -F 999 -g -o "$out" target/profile/release/resformer embed --model models/all-MiniLM-L6-v2 \
    --speed --device cpu --batch "$batch" --repeats "$repeats"
perf report -i "$out" --no-children --sort symbol --stdio 2>/dev/null >target/profile/report.txt
grep -E '^ +[0-9]' target/profile/report.txt | sed 's/ *- *- *$//' | head -30
