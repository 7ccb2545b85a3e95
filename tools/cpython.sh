#!/usr/bin/env bash
# tools/cpython.sh - build a plain upstream CPython from Debian's source packages, one per prefix.
#
#   tools/cpython.sh 3.14 3.15          # newest upstream release Debian ships for each series
#   tools/cpython.sh 3.14t              # "t": the free-threaded build (--disable-gil; 3.13 and up)
#   tools/cpython.sh 3.14.7 3.15.0~rc1  # an exact upstream version, spelled as Debian spells it
#
# Why Debian's packages: every python3.X source package carries the untouched upstream tarball
# (its .orig.tar.xz), and apt checks it against the signed archive index. Debian's own patches
# are not applied: the result is the interpreter python.org ships.
#
# Each spec goes to $CPYTHON_CACHE/<spec> (default ~/.cache/mighty-patcher/cpython/<spec>). A
# prefix whose stamp records the same configure flags, and whose interpreter passes the smoke
# check, is reused: running this again costs a second. One line per spec on stdout:
#   <spec> <path of the interpreter> <its version>
# Progress and errors go to stderr; the build's own output to $CPYTHON_CACHE/logs/<spec>.log.
#
# Environment: CPYTHON_CACHE; JOBS (parallel make jobs, default: the number of CPUs);
# CONFIGURE_EXTRA (more configure flags, such as --with-pydebug; a change rebuilds);
# ALLOW_UNSIGNED=1 (take a tarball found on the mirror without a signed .dsc to check it by).
set -euo pipefail

CACHE=${CPYTHON_CACHE:-$HOME/.cache/mighty-patcher/cpython}
JOBS=${JOBS:-$(nproc)}
BASE_FLAGS=(--with-ensurepip=install --disable-test-modules --without-system-libmpdec)
# What building CPython with the modules a virtualenv, pip and a C extension build need takes.
PACKAGES=(build-essential pkg-config xz-utils curl ca-certificates gpgv debian-keyring
  libssl-dev zlib1g-dev libffi-dev libbz2-dev liblzma-dev libsqlite3-dev libreadline-dev
  libncurses-dev uuid-dev libgdbm-dev libgdbm-compat-dev libzstd-dev)

note() { printf 'cpython.sh: %s\n' "$*" >&2; }
fail() { printf 'cpython.sh: error: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} = 0 ] && return
  note "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

has_source_index() { apt-cache showsrc "$1" 2>/dev/null | grep -q '^Package:'; }

# The machine's release (bookworm here) has no python3.14 source: add source indexes of the
# newer suites from the mirror the machine already uses. Only sources: nothing is upgraded.
add_source_index() {
  local pkg=$1 mirror list=/etc/apt/sources.list.d/mighty-patcher-cpython-src.sources
  has_source_index "$pkg" && return
  if [ ! -f "$list" ]; then
    mirror=$(awk '$1 == "URIs:" { print $2; exit }' /etc/apt/sources.list.d/debian.sources \
      2>/dev/null || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    note "adding Debian source indexes (trixie, sid) from $mirror"
    printf '%s\n' "Types: deb-src" "URIs: $mirror" "Suites: trixie sid" "Components: main" \
      "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" | as_root tee "$list" >/dev/null
  fi
  as_root apt-get update -qq
  has_source_index "$pkg" || fail "apt knows no source package $pkg, even with trixie and sid"
}

# upstream_of DEBIAN_VERSION: 3.14.7-1+b2 -> 3.14.7 (epoch and Debian revision dropped)
upstream_of() { local v=${1#*:}; printf '%s' "${v%-*}"; }

cached_tarball() { compgen -G "$SRC/$1_$2.orig.tar.*" | grep -v '\.asc$' | head -n 1 || true; }

# tarball SERIES [UPSTREAM]: the path of a checked upstream tarball of python<SERIES>.
tarball() {
  local series=$1 want=${2:-} pkg=python$1 v up found
  mkdir -p "$SRC"
  if [ -n "$want" ]; then
    found=$(cached_tarball "$pkg" "$want"); [ -n "$found" ] && { echo "$found"; return; }
  fi
  # First choice: apt, which checks the download against the signed index.
  for v in $(apt-cache showsrc "$pkg" | awk '$1 == "Version:" { print $2 }' | sort -Vru); do
    up=$(upstream_of "$v")
    [ -z "$want" ] || [ "$up" = "$want" ] || continue
    found=$(cached_tarball "$pkg" "$up"); [ -n "$found" ] && { echo "$found"; return; }
    if (cd "$SRC" && apt-get source --download-only -qq "$pkg=$v" >/dev/null 2>&1); then
      note "$pkg $up: fetched with apt-get source"
      cached_tarball "$pkg" "$up"; return
    fi
    note "$pkg $v: listed in the index but not on the mirror (the pool lags the index)"
  done
  from_pool "$series" "$want"
}

# Second choice: the mirror's pool still holds older uploads that the index no longer lists.
# A tarball from there is trusted only through its .dsc: the .dsc's signature is checked with
# Debian's keyring, then the tarball's sha256 against the one the .dsc gives.
from_pool() {
  local series=$1 want=$2 pkg=python$1 pool tries=() t n name dsc sum file
  pool=$(apt-get source --print-uris -qq "$pkg" 2>/dev/null | awk -F"'" '/\.dsc/ { print $2; exit }')
  [ -n "$pool" ] || fail "cannot tell where the mirror keeps $pkg"
  pool=${pool%/*}
  if [ -n "$want" ]; then
    tries=("$want")
  else
    for n in $(seq 20 -1 0); do tries+=("$series.$n"); done
    for t in rc3 rc2 rc1 b4 b3 b2 b1; do tries+=("$series.0~$t"); done
  fi
  for t in "${tries[@]}"; do
    name=${pkg}_${t//\~/%7E}
    curl -fsIL -o /dev/null "$pool/$name.orig.tar.xz" 2>/dev/null || continue
    file=$SRC/${pkg}_$t.orig.tar.xz dsc=
    for n in 1 2 3 4 5 6; do
      if curl -fsSL -o "$SRC/${pkg}_$t.dsc" "$pool/$name-$n.dsc" 2>/dev/null; then dsc=$n; break; fi
    done
    if [ -n "$dsc" ] && gpgv --keyring /usr/share/keyrings/debian-keyring.gpg \
        "$SRC/${pkg}_$t.dsc" 2>/dev/null; then
      sum=$(awk -v f="${pkg}_$t.orig.tar.xz" '/^Checksums-Sha256:/ { on = 1; next }
        /^[^ ]/ { on = 0 } on && $3 == f { print $1 }' "$SRC/${pkg}_$t.dsc")
      [ -n "$sum" ] || fail "$pkg $t: the .dsc lists no sha256 for the tarball"
      curl -fsSL -o "$file.part" "$pool/$name.orig.tar.xz"
      echo "$sum  $file.part" | sha256sum --check --quiet - || fail "$pkg $t: sha256 mismatch"
    elif [ "${ALLOW_UNSIGNED:-0}" = 1 ]; then
      note "WARNING: $pkg $t has no verifiable .dsc on the mirror; taken unchecked (ALLOW_UNSIGNED)"
      curl -fsSL -o "$file.part" "$pool/$name.orig.tar.xz"
    else
      note "$pkg $t: on the mirror, but no signed .dsc to check it by (ALLOW_UNSIGNED=1 takes it)"
      continue
    fi
    mv "$file.part" "$file"
    note "$pkg $t: fetched from the mirror's pool"
    echo "$file"; return
  done
  fail "$pkg${want:+ $want}: no source found on the mirror"
}

smoke_check() {
  "$1" -c 'import ssl, zlib, bz2, lzma, ctypes, sqlite3, readline, _decimal, venv, ensurepip' \
    2>/dev/null
}

build() {
  local spec=$1 series exact ft prefix exe stamp flags src work started
  [[ $spec =~ ^(3\.[0-9]+)(\.[0-9]+(~(a|b|rc)[0-9]+)?)?(t?)$ ]] || fail "not a version: '$spec'"
  series=${BASH_REMATCH[1]} exact=${BASH_REMATCH[2]:+${BASH_REMATCH[1]}${BASH_REMATCH[2]}}
  ft=${BASH_REMATCH[5]}
  prefix=$CACHE/$spec exe=$CACHE/$spec/bin/python$series$ft stamp=$CACHE/$spec/.built-by-cpython.sh
  flags=(--prefix="$prefix" "${BASE_FLAGS[@]}")
  [ -n "$ft" ] && flags+=(--disable-gil)
  # shellcheck disable=SC2206  # CONFIGURE_EXTRA is a list of flags, split on spaces on purpose
  [ -n "${CONFIGURE_EXTRA:-}" ] && flags+=(${CONFIGURE_EXTRA})
  if [ -f "$stamp" ] && grep -qxF "flags: ${flags[*]}" "$stamp" && smoke_check "$exe"; then
    note "$spec: already built in $prefix"
    printf '%s %s %s\n' "$spec" "$exe" "$("$exe" -c 'import platform; print(platform.python_version())')"
    return
  fi
  if [ -n "$ft" ] && [ "${series#3.}" -lt 13 ]; then fail "$spec: free-threaded builds start at 3.13"; fi
  install_packages
  add_source_index "python$series"
  src=$(tarball "$series" "$exact")
  work=$CACHE/build/$spec
  rm -rf "$work" "$prefix"
  mkdir -p "$work" "$CACHE/logs"
  tar -xf "$src" -C "$work" --strip-components=1
  note "$spec: building $(basename "$src") (${flags[*]:1}); log in $CACHE/logs/$spec.log"
  started=$SECONDS
  if ! (cd "$work" && ./configure "${flags[@]}" && make -j"$JOBS" && make install) \
      >"$CACHE/logs/$spec.log" 2>&1; then
    tail -n 25 "$CACHE/logs/$spec.log" >&2
    fail "$spec: the build failed (whole log: $CACHE/logs/$spec.log)"
  fi
  smoke_check "$exe" || fail "$spec: built, but a module it needs is missing (see the log)"
  printf 'source: %s\nflags: %s\nseconds: %s\n' "$(basename "$src")" "${flags[*]}" \
    $((SECONDS - started)) >"$stamp"
  rm -rf "$work"
  note "$spec: built in $((SECONDS - started)) s"
  printf '%s %s %s\n' "$spec" "$exe" "$("$exe" -c 'import platform; print(platform.python_version())')"
}

[ $# -gt 0 ] || usage
case $1 in -h | --help) usage ;; esac
SRC=$CACHE/sources
for spec in "$@"; do build "$spec"; done
