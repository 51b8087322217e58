#!/usr/bin/env bash
# Builds the wasm package (crates/resformer-web) into web/pkg, first installing what the build
# and the browser tests need when it is missing:
# - the Rust standard library's sources for this rustc: rustup's toolchain has no wasm32 std and
#   cannot fetch one, so std is built from source (-Zbuild-std) out of Debian's rust-src of the
#   same version, unpacked under target/web-tools (Debian's own rustc is not used);
# - wasm-bindgen-cli at the version of the wasm-bindgen crate in Cargo.lock;
# - Debian's chromium (it bundles SwiftShader's WebGPU) and playwright-core from npm.
# WEB_BUILD_NO_BROWSER=1 skips the browser parts.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$PWD/target/web-tools"
mkdir -p "$tools"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

# 1. std's sources beside the toolchain (cargo looks in SYSROOT/lib/rustlib/src/rust)
rust_version=$(rustc -V | awk '{print $2}')
sysroot=$(rustc --print sysroot)
if [ ! -e "$sysroot/lib/rustlib/src/rust/library/std/Cargo.toml" ]; then
    src="$tools/rust-src-$rust_version"
    if [ ! -e "$src/usr/src/rustc-$rust_version/library/std/Cargo.toml" ]; then
        echo "web-build: fetching Debian's rust-src $rust_version (std's sources for -Zbuild-std)" >&2
        apt="$tools/apt"
        mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
        printf '%s\n' "deb http://deb.debian.org/debian trixie-backports main" \
            "deb http://deb.debian.org/debian trixie main" "deb http://deb.debian.org/debian sid main" >"$apt/sources.list"
        opts=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o Dir::Etc::sourceparts=/dev/null
            -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o Debug::NoLocking=1)
        apt-get -qq "${opts[@]}" update
        deb_version=$(apt-cache "${opts[@]}" madison rust-src | awk -v v="$rust_version+" '$3 ~ "^"v {print $3; exit}')
        if [ -z "$deb_version" ]; then
            echo "web-build: Debian has no rust-src for rustc $rust_version" >&2
            exit 1
        fi
        (cd "$apt" && apt-get -qq "${opts[@]}" download "rust-src=$deb_version" 2>/dev/null)
        rm -rf "$src" && mkdir -p "$src"
        dpkg -x "$apt"/rust-src_*.deb "$src"
    fi
    mkdir -p "$sysroot/lib/rustlib/src"
    ln -sfn "$src/usr/src/rustc-$rust_version" "$sysroot/lib/rustlib/src/rust"
fi

# 2. wasm-bindgen-cli, the same version as the crate
bindgen_version=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/[" ]/, ""); sub("version=", ""); print; exit}' Cargo.lock)
bindgen=$(command -v wasm-bindgen || true)
if [ -z "$bindgen" ] || [ "$("$bindgen" --version | awk '{print $2}')" != "$bindgen_version" ]; then
    bindgen="$tools/bin/wasm-bindgen"
    if [ ! -x "$bindgen" ] || [ "$("$bindgen" --version | awk '{print $2}')" != "$bindgen_version" ]; then
        echo "web-build: installing wasm-bindgen-cli $bindgen_version into $tools" >&2
        cargo install --quiet --root "$tools" wasm-bindgen-cli --version "$bindgen_version"
    fi
fi

# 3. the browser and its driver
if [ "${WEB_BUILD_NO_BROWSER:-0}" != 1 ]; then
    if ! command -v chromium >/dev/null; then
        echo "web-build: installing Debian's chromium" >&2
        export DEBIAN_FRONTEND=noninteractive
        as_root apt-get install -y -qq chromium >/dev/null 2>&1 ||
            { as_root apt-get update -qq && as_root apt-get install -y -qq chromium >/dev/null; }
    fi
    [ -e web/node_modules/playwright-core/package.json ] || npm ci --prefix web --no-audit --no-fund --silent
fi

# 4. the package: the library and std for wasm32, then the JS bindings. Its own target dir:
# RUSTC_BOOTSTRAP changes what proc-macro2's build script sees, so sharing target/ would
# rebuild every native proc macro (and all above them) after each wasm build and back.
started=$(date +%s)
RUSTC_BOOTSTRAP=1 cargo build --quiet --release --target wasm32-unknown-unknown \
    --target-dir target/web -Zbuild-std=std,panic_abort -p resformer-web
"$bindgen" --target web --no-typescript --out-dir web/pkg \
    target/web/wasm32-unknown-unknown/release/resformer_web.wasm 2>/dev/null
echo "web-build: web/pkg built in $(($(date +%s) - started)) s ($(du -k web/pkg/resformer_web_bg.wasm | cut -f1) KiB of wasm)" >&2
