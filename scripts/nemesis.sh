#!/usr/bin/env bash
# The long nemesis run: five cairn processes in network namespaces under a seeded
# schedule of faults. Needs root (namespaces, iptables). Report: OUT/report.txt;
# history: OUT/history.jsonl.
#
#   scripts/nemesis.sh                 # 40 faults of 8 s, seed from the clock
#   FAULTS=100 SEED=7 scripts/nemesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."
FAULTS=${FAULTS:-40}
FAULT_SECS=${FAULT_SECS:-8}
SEED=${SEED:-$(date +%s)}
OUT=${OUT:-nemesis-out/$SEED}
command -v iptables >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 iptables
cargo build --release -q -p cairn -p cairn-nemesis
exec target/release/cairn-nemesis --cairn target/release/cairn --seed "$SEED" \
    --faults "$FAULTS" --fault-secs "$FAULT_SECS" --out "$OUT"
