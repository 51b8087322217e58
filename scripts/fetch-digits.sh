#!/usr/bin/env bash
# Fetches the UCI handwritten digits (1,797 8x8 images, labels 0-9) that scikit-learn's wheel
# carries as sklearn/datasets/data/digits.csv.gz into data/digits/, checks the file's sha256,
# and writes data/digits/digits.csv (64 pixel values 0-16 and the label per row). The wheel is
# downloaded, not installed. Idempotent: a data set already in place and intact is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=data/digits
want=09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22
wheel_spec=scikit-learn==1.9.1

check() { [ -f "$dest/digits.csv.gz" ] && [ -f "$dest/digits.csv" ] &&
    [ "$(sha256sum "$dest/digits.csv.gz" | cut -d' ' -f1)" = "$want" ]; }

if check; then
    echo "fetch-digits: $dest is in place (sha256 ok)"
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-digits: downloading $wheel_spec from PyPI (the wheel only, not installed)" >&2
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$wheel_spec"
wheel=$(ls "$tmp"/*.whl)
mkdir -p "$dest"
python3 - "$wheel" "$dest" <<'PY'
import gzip, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
data = zipfile.ZipFile(wheel).read("sklearn/datasets/data/digits.csv.gz")
open(f"{dest}/digits.csv.gz", "wb").write(data)
open(f"{dest}/digits.csv", "wb").write(gzip.decompress(data))
PY
if ! check; then
    echo "fetch-digits: $dest/digits.csv.gz does not match sha256 $want" >&2
    rm -f "$dest/digits.csv.gz" "$dest/digits.csv"
    exit 1
fi
echo "fetch-digits: $dest ready: $(wc -l < "$dest/digits.csv") images (sha256 ok)"
