#!/usr/bin/env bash
# Fault-and-load run of the quickstart over loopback (see benches/drivers/fault_load.rs).
#   bash benches/fault_load.sh              # 5 s per phase, 64 workers
#   PHASE_SECS=3 WORKERS=32 bash benches/fault_load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --example quickstart --example fault_load -q
target/release/examples/fault_load
