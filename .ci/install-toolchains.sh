#!/bin/sh
# Install the guest toolchains that build WebAssembly agents, and the CPU emulator the
# engine's batch-invariance tests run under (run as root on Debian 12).
#
#   C:              clang + lld + wasi-libc + the wasm32 compiler-rt builtins (Debian packages)
#   AssemblyScript: the `assemblyscript` npm package, pinned in examples/agents/package.json
#                   and installed into examples/agents/node_modules (git-ignored), never globally
#   qemu-user:      runs the test interpreter under other x86-64 CPU models (AVX2, AVX), so
#                   tests/test_engine_isa.py covers onnxruntime kernel paths the host lacks
#   chromium:       the browser the views' render tests drive with Playwright
#   extension/:     the views' front-end tool chain (esbuild, TypeScript, dagre), pinned in
#                   extension/package-lock.json, installed into extension/node_modules
#
# Idempotent: re-running it only re-checks the packages. WAT needs nothing (wasmtime ships
# wat2wasm). Rust is not supported (rustup cannot fetch wasm targets offline).
set -eu

ROOT=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
APT_PACKAGES="clang lld wasi-libc libclang-rt-14-dev-wasm32 chromium"
if [ "$(uname -m)" = "x86_64" ]; then
    APT_PACKAGES="$APT_PACKAGES qemu-user"
fi
# Node.js may come from elsewhere (e.g. NodeSource, which bundles npm); only add Debian's
# when there is no npm at all.
if ! command -v npm >/dev/null 2>&1; then
    APT_PACKAGES="$APT_PACKAGES nodejs npm"
fi

missing=""
for pkg in $APT_PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    # shellcheck disable=SC2086
    apt-get install -y --no-install-recommends $missing
fi

# The pinned AssemblyScript (0.27.x) runs on Node.js 18, Debian 12's version; 0.28 needs 20.
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
    echo "Node.js $(node --version) is too old for AssemblyScript; install Node.js 18 or newer" >&2
    exit 1
fi

cd "$ROOT/examples/agents"
pinned=$(node -p 'require("./package.json").devDependencies.assemblyscript')
installed=$(node -p 'try { require("./node_modules/assemblyscript/package.json").version } catch (e) { "" }')
if [ "$installed" != "$pinned" ]; then
    npm ci --no-audit --no-fund --loglevel=error  # exactly what package-lock.json pins
fi

clang --version | head -n 1
echo "asc $(node node_modules/assemblyscript/bin/asc.js --version)"

# The views' front end: reinstall when any pinned devDependency is missing or at another version.
cd "$ROOT/extension"
stale=$(node -e '
const pinned = require("./package.json").devDependencies;
const stale = Object.keys(pinned).filter((name) => {
  try { return require(`./node_modules/${name}/package.json`).version !== pinned[name]; }
  catch (e) { return true; }
});
console.log(stale.join(" "));
')
if [ -n "$stale" ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
echo "esbuild $(node_modules/.bin/esbuild --version), tsc $(node_modules/.bin/tsc --version)"
