#!/usr/bin/env bash
# Records every IVR prompt listed in prompts/prompts.tsv (lang, name, text)
# with espeak-ng, as 8 kHz mono A-law WAV (G.711 PCMA, what the phone leg
# sends as it is) in prompts/{lang}/{name}.wav. Files of names no longer in
# the table are removed. A recorded human voice may replace any file later;
# re-running this script overwrites it, so keep such files out of the table
# run or re-record them after.
#
# Needs espeak-ng and sox. Usage: telemed/scripts/make-prompts.sh
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
table="$here/prompts/prompts.tsv"
out="$here/prompts"
# Words per minute: a little slower than espeak-ng's 175, for the phone.
speed="${SPEED:-150}"

for tool in espeak-ng sox; do
    command -v "$tool" >/dev/null || { echo "make-prompts: $tool is not installed" >&2; exit 1; }
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

declare -A seen=()
count=0
while IFS=$'\t' read -r lang name text; do
    [[ -z "$lang" || "$lang" == \#* ]] && continue
    case "$lang" in
        hi) voice=hi ;;
        en) voice=en-gb ;;
        *) echo "make-prompts: unknown language '$lang' for '$name'" >&2; exit 1 ;;
    esac
    if [[ -z "${name:-}" || -z "${text:-}" || ! "$name" =~ ^[a-z0-9-]+$ ]]; then
        echo "make-prompts: bad row: $lang $name" >&2
        exit 1
    fi
    if [[ -n "${seen[$lang/$name]:-}" ]]; then
        echo "make-prompts: $lang/$name is listed twice" >&2
        exit 1
    fi
    seen[$lang/$name]=1
    mkdir -p "$out/$lang"
    espeak-ng -v "$voice" -s "$speed" -w "$tmp/raw.wav" -- "$text"
    # Trim the synthesiser's leading and trailing silence (a sequence of
    # prompts should not stutter), then resample to 8 kHz mono A-law.
    sox "$tmp/raw.wav" -r 8000 -c 1 -e a-law "$out/$lang/$name.wav" \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse pad 0 0.05
    count=$((count + 1))
done <"$table"

for f in "$out"/*/*.wav; do
    [[ -e "$f" ]] || continue
    rel="${f#"$out"/}"
    [[ -n "${seen[${rel%.wav}]:-}" ]] || { echo "make-prompts: removing stale $rel"; rm -f "$f"; }
done

echo "make-prompts: $count prompts in $out ($(du -sh "$out" | cut -f1))"
