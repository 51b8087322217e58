#!/usr/bin/env bash
# The page: builds the wasm package and serves the checkout on loopback; open the URL it
# prints (Chrome or Edge for WebGPU; other browsers run the CPU backend).
#   bash scripts/web.sh [PORT]     (default 8000)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-minilm.sh
bash scripts/fetch-digits.sh
WEB_BUILD_NO_BROWSER=1 bash scripts/web-build.sh
exec node web/serve.mjs "${1:-8000}"
