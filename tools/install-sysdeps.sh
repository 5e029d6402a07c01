#!/usr/bin/env bash
# Installs the C/C++ libraries the native core builds against, and the tests' system tools (Debian/Ubuntu package
# names). Idempotent: installs only what `dpkg -s` does not find.
set -euo pipefail
# wordnet-base + wordnet-sense-index: WordNet offline, for the reranker training tool's near-miss negatives.
# chromium: the headless browser the playground's tests drive (playwright launches this executable; it never
# downloads a browser of its own).
PKGS=(libhnswlib-dev libstemmer-dev libutf8proc-dev zlib1g-dev libgtest-dev cmake ninja-build g++ wordnet-base wordnet-sense-index
      chromium)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "funnelrank needs these system packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}"
