#!/usr/bin/env bash
# System packages the build needs: libclang for bindgen (layout checks), a C compiler and make.
# Installs only what is missing; uses sudo when not root. Safe to run again.
set -euo pipefail

need=()
[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 \
  || need+=(libclang-dev)
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v make >/dev/null 2>&1 || need+=(make)
[ ${#need[@]} -eq 0 ] && exit 0

sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
echo "bootstrap: apt-get install ${need[*]}" >&2
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "${need[@]}" >/dev/null
