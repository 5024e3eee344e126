#!/usr/bin/env bash
# Throughput over loopback HTTP: the same route without and with the layer
# (warm), 64 connections, measured with wrk in rounds that rotate the order
# so that drift on a shared machine hits every route alike. Reports the
# median of the per-round ratios.
#
#   bash benches/loopback.sh            # 10 rounds of 5 s per route
#   ROUNDS=3 SECONDS_PER_RUN=5 bash benches/loopback.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-10}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}

if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk (Debian package)" >&2
  apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
fi

cargo build --release --example loopback_server -q
token_file=$(mktemp)
log=$(mktemp)
TOKEN_FILE="$token_file" target/release/examples/loopback_server >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$token_file" "$log"' EXIT
for _ in $(seq 1 100); do grep -q '^listening on' "$log" && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$log")
[ -n "$url" ] || { echo "server did not start"; cat "$log"; exit 1; }
token=$(cat "$token_file")

rps() { # route -> requests per second
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" -H "Authorization: $token" "$url$1" \
    | awk '/^Requests\/sec:/ {print $2}'
}
# Warm both caches.
curl -sf -o /dev/null -H "Authorization: $token" "$url/elevated"
rps /elevated >/dev/null

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# Three routes, same handler: /plain (no layer), /floor (a route layer
# that only clones two Arcs into the extensions: what any such layer costs
# in axum) and /elevated (this crate's layer, warm). The order rotates each
# round, so no route always runs right after another.
routes=(/plain /floor /elevated)
floor_ratios=(); elevated_ratios=()
for round in $(seq 1 "$ROUNDS"); do
  declare -A got=()
  for i in 0 1 2; do
    route=${routes[$(( (i + round) % 3 ))]}
    got[$route]=$(rps "$route")
  done
  p=${got[/plain]}; f=${got[/floor]}; e=${got[/elevated]}
  floor_ratios+=("$(echo "$f / $p" | bc -l)"); elevated_ratios+=("$(echo "$e / $p" | bc -l)")
  printf 'round %2d: plain %8.0f   floor %8.0f   elevated %8.0f req/s   floor/plain %.3f   elevated/plain %.3f\n' \
    "$round" "$p" "$f" "$e" "$(echo "$f / $p" | bc -l)" "$(echo "$e / $p" | bc -l)"
  unset got
done
printf 'median over %d rounds: elevated/plain = %.3f, floor/plain = %.3f\n' "$ROUNDS" \
  "$(printf '%s\n' "${elevated_ratios[@]}" | median)" "$(printf '%s\n' "${floor_ratios[@]}" | median)"
