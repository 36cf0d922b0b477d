#!/usr/bin/env bash
# The idle cost of running several nodes on one Redis (leases, presence,
# timers, the follower): starts two `careline serve` nodes on one SQLite file
# and the local Redis under a throwaway key prefix, lets them settle, then
# reports each node's CPU time and Redis's command counts over SECONDS
# (default 60). Needs a built binary (BIN, default target/debug/careline) and
# Redis on 127.0.0.1:6379; uses ports 7811 and 7812. Resets Redis's command
# statistics (`CONFIG RESETSTAT`): run it against a Redis of your own.
set -euo pipefail
seconds=${1:-60}
bin=$(realpath "${BIN:-target/debug/careline}")
dir=$(mktemp -d)
prefix="idle-$$"
export REDIS_URL=redis://127.0.0.1:6379 CARELINE_REDIS_PREFIX=$prefix DATABASE_URL=$dir/careline.db
cleanup() {
  kill "${a:-}" "${b:-}" 2>/dev/null || true
  redis-cli --scan --pattern "$prefix*" | xargs -r redis-cli del >/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
cd "$dir"
"$bin" serve --demo --listen 127.0.0.1:7811 >a.log 2>&1 &
a=$!
sleep 8
"$bin" serve --listen 127.0.0.1:7812 >b.log 2>&1 &
b=$!
sleep 10
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
a0=$(ticks $a) b0=$(ticks $b)
redis-cli CONFIG RESETSTAT >/dev/null
sleep "$seconds"
a1=$(ticks $a) b1=$(ticks $b)
hz=$(getconf CLK_TCK)
awk -v s="$seconds" -v a=$((a1 - a0)) -v b=$((b1 - b0)) -v hz="$hz" \
  'BEGIN { printf "CPU seconds in %d s idle: node a %.2f, node b %.2f\n", s, a / hz, b / hz }'
redis-cli INFO commandstats | grep -E '^cmdstat_(set|exists|xadd|xrange|xread|publish):'
