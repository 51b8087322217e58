#!/usr/bin/env bash
# The Python package's tests: build crates/resformer-py into a fresh virtual environment
# (target/py-venv) exactly as a user installs it, then run its pytest suite. scripts/test.sh
# calls this with the GPU and the real models required, as for the Rust tests.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/py-venv
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# test-only packages (Ray Data for resformer.ray); the package itself needs only numpy
"$venv/bin/python" -m pip install --quiet pytest safetensors numpy pyarrow "ray[data]>=2.51" openai
"$venv/bin/python" -m pip install --quiet ./crates/resformer-py
"$venv/bin/python" -c 'import resformer; print("resformer", resformer.__version__, "installed in '"$venv"'")'
cd crates/resformer-py
"../../$venv/bin/python" -m pytest -q -p no:cacheprovider tests "$@"
