#!/usr/bin/env bash
# The deterministic performance gate: instruction counts (callgrind, through
# gungraun) of one warm request through the layer against the bare route,
# 1 KiB caller token. Fails when the layer adds more than its budget.
#
#   bash benches/instruction_gate.sh            # installs valgrind / gungraun-runner if missing
#   BUDGET=4300 bash benches/instruction_gate.sh
#
# Why this budget: the keyed digest of a 1 KiB token is ~1,480 instructions
# on its own (POLYVAL with CLMUL, then AES-NI); the two cache lookups, the
# clock read, the policy check and the two extensions the layer attaches
# are ~1,300; axum's route-layer plumbing and dropping the extensions ~1,150.
# Measured: +3,953 (elevating route), +3,678 (identity only). The budget
# leaves ~9% for toolchain drift; a second digest or a third extension
# breaks it.
set -euo pipefail
cd "$(dirname "$0")/.."

BUDGET="${BUDGET:-4300}"
RUNNER_VERSION=0.20.0

if ! command -v valgrind >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi
if [ "$(gungraun-runner --version 2>/dev/null | awk '{print $2}')" != "$RUNNER_VERSION" ]; then
  cargo install gungraun-runner --version "$RUNNER_VERSION" --locked
fi
grep -qw pclmulqdq /proc/cpuinfo || echo "warning: no PCLMULQDQ here: the digest runs in software and the counts are not comparable"

out=$(cargo bench --bench instructions 2>&1) || { echo "$out"; exit 1; }
echo "$out" | grep -E "^instructions::|Instructions:"

count() { echo "$out" | grep -A1 "warm_request $1:" | awk '/Instructions:/ {split($2, a, "|"); print a[1]}'; }
bare=$(count without_layer)
elevating=$(count with_layer)
identity=$(count with_layer_identity_only)
for n in "$bare" "$elevating" "$identity"; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "could not read the instruction counts"; exit 1; }
done
added=$((elevating - bare))
added_identity=$((identity - bare))
echo "instructions added per warm request: ${added} (route that declares a Wix call), ${added_identity} (identity only); budget ${BUDGET}"
if [ "$added" -gt "$BUDGET" ] || [ "$added_identity" -gt "$BUDGET" ]; then
  echo "FAIL: the warm path grew past its instruction budget"
  exit 1
fi
echo "instruction gate passed"
