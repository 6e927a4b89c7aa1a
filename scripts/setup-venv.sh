#!/usr/bin/env bash
# Installs exactly the committed lock into a virtualenv: `make setup` runs this, `make lock` refreshes the lock.
#
# llama-cpp-python ships only as source, so it is compiled here. Its default (GGML_NATIVE=ON) takes whatever the build
# machine's CPU has — AMX kernels on a Sapphire Rapids Xeon crashed the Gemma model there — so it is built for a fixed,
# portable baseline instead: x86-64 with AVX2/FMA/F16C, nothing newer (plain ARMv8 on aarch64). These flags live here
# and nowhere else. The wheel is cached under a key made of the locked sdist's hashes, the flags, the Python and the
# architecture, never in pip's cache (keyed by the sdist alone, it would hand back a native wheel built by anyone).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY=${PY:-python3}
LOCK=requirements.lock
BUILD_LOCK=requirements-build.lock

LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_BACKEND_DL=OFF -DGGML_OPENMP=OFF"
case "$(uname -m)" in
  x86_64|amd64)
    LLAMA_CMAKE_ARGS+=" -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=OFF"
    LLAMA_CMAKE_ARGS+=" -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF"
    LLAMA_CMAKE_ARGS+=" -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
    ;;
esac
# `make print-llama-flags` (and `hanmadi doctor`) show what was used.
if [ "${1:-}" = "--print-llama-flags" ]; then
  echo "$LLAMA_CMAKE_ARGS"
  exit 0
fi

test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. The packaging and build tools, from their own lock (so nothing below needs a build-isolation download).
"${PIP[@]}" install -q --require-hashes --no-deps -r "$BUILD_LOCK"

# 2. The lock split in two: llama-cpp-python (built below) and everything else.
awk -v out="$work/llama.txt" -v rest="$work/rest.txt" '
  /^[A-Za-z0-9]/ { target = ($0 ~ /^llama-cpp-python==/) ? out : rest }
  /^#/ { next }
  { if (target != "") print > target }
' "$LOCK"

pyver=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
key=$( { cat "$work/llama.txt"; echo "$LLAMA_CMAKE_ARGS"; echo "$pyver"; uname -m; } | sha256sum | cut -c1-16)
cache=${HANMADI_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hanmadi/llama-wheels}/$key
if ! ls "$cache"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "Compiling llama-cpp-python for a portable CPU baseline (once per machine, about 5-7 minutes)..."
  echo "  CMAKE_ARGS=$LLAMA_CMAKE_ARGS"
  rm -rf "$cache.tmp"
  mkdir -p "$cache.tmp"
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" FORCE_CMAKE=1 CMAKE_BUILD_PARALLEL_LEVEL=$(nproc 2>/dev/null || echo 2) \
    "${PIP[@]}" wheel -q --no-deps --no-cache-dir --no-build-isolation --no-binary llama-cpp-python \
    --require-hashes -r "$work/llama.txt" -w "$cache.tmp"
  echo "$LLAMA_CMAKE_ARGS" > "$cache.tmp/CMAKE_ARGS"
  rm -rf "$cache"
  mv "$cache.tmp" "$cache"
fi

# 3. Everything else, exactly as locked (hashes checked; --no-deps: the lock is the whole closure).
"${PIP[@]}" install -q --require-hashes --no-deps --no-build-isolation -r "$work/rest.txt"
"${PIP[@]}" install -q --no-deps --force-reinstall "$cache"/llama_cpp_python-*.whl
mkdir -p "$VENV/share/hanmadi"
cp "$cache/CMAKE_ARGS" "$VENV/share/hanmadi/llama-cmake-args"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e .
"${PIP[@]}" check
