#!/usr/bin/env bash
# Throughput over loopback HTTP: the same route without and with the layer
# (warm), 64 connections, measured with wrk in alternating rounds so that
# drift on a shared machine hits both sides alike.
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
# Warm both caches and the connection pool.
curl -sf -o /dev/null -H "Authorization: $token" "$url/elevated"
rps /elevated >/dev/null

# Alternate the order each round, so neither route always runs second.
ratios=()
plain_sum=0; elevated_sum=0
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then p=$(rps /plain); e=$(rps /elevated); else e=$(rps /elevated); p=$(rps /plain); fi
  ratio=$(echo "$e / $p" | bc -l)
  ratios+=("$ratio")
  printf 'round %2d: plain %10.0f req/s   elevated %10.0f req/s   ratio %.3f\n' "$round" "$p" "$e" "$ratio"
  plain_sum=$(echo "$plain_sum + $p" | bc -l); elevated_sum=$(echo "$elevated_sum + $e" | bc -l)
done
median=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
printf 'over %d rounds: plain %.0f req/s, elevated %.0f req/s on average; elevated/plain = %.3f (ratio of means), %.3f (median of round ratios)\n' \
  "$ROUNDS" "$(echo "$plain_sum / $ROUNDS" | bc -l)" "$(echo "$elevated_sum / $ROUNDS" | bc -l)" \
  "$(echo "$elevated_sum / $plain_sum" | bc -l)" "$median"
