#!/usr/bin/env bash
# A node that lost its disk, rebuilt by anti-entropy while clients write: how long the
# rebuild takes, how many repairs its peers send (ideally one per key), what it does to
# the foreground tail, and what the disk writes. Each round starts a 3-node `cairn dev`
# cluster, loads KEYS registers, lets it settle, then runs counter increments open loop
# at RATE for 12 s; in the "wipe" runs node 2 is SIGKILLed 3 s in, its store deleted and
# the node restarted. Runs with and without the wipe alternate, ROUNDS pairs.
#
#   benches/rebuild.sh                       # KEYS=300000 RATE=8000 ROUNDS=2
#   KEYS=50000 ROUNDS=1 benches/rebuild.sh   # a quick look
#
# The "without" runs also show what a store of KEYS keys costs the tail on its own
# (docs/decisions/half-peak-tail.md, "The store's size matters").
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=${KEYS:-300000}
RATE=${RATE:-8000}
ROUNDS=${ROUNDS:-2}
SETTLE=${SETTLE:-15}
QUIC=${QUIC:-7500}
HTTP=${HTTP:-8500}

echo "==> building cairn (release)"
cargo build --release -q
CAIRN=target/release/cairn
WORK=$(mktemp -d /tmp/cairn-rebuild.XXXXXX)
DEV=""
cleanup() {
    [ -n "$DEV" ] && kill -TERM "$DEV" 2>/dev/null || true
    pkill -f -- "--data $WORK/" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Sectors written to the device holding WORK (512 bytes each), or nothing if it is not
# a block device listed in /proc/diskstats (tmpfs, say). Counted on the device itself,
# partition included, as the kernel lists both.
disk_sectors() {
    local dev
    dev=$(df --output=source "$WORK" | tail -1 | sed 's|^/dev/||')
    awk -v d="$dev" '$3 == d { print $10 }' /proc/diskstats
}

metric() { # http port, metric name: its value, or 0
    curl -s "127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2; found = 1 } END { if (!found) print 0 }'
}

one_run() { # round, wipe (0/1)
    local round=$1 wipe=$2 dir=$WORK/cluster
    rm -rf "$dir"
    "$CAIRN" dev --nodes 3 --dir "$dir" --quic-port "$QUIC" --http-port "$HTTP" >"$WORK/dev.log" 2>&1 &
    DEV=$!
    until grep -q "Ctrl-C" "$WORK/dev.log" 2>/dev/null; do
        kill -0 "$DEV" 2>/dev/null || { cat "$WORK/dev.log"; exit 1; }
        sleep 0.2
    done
    "$CAIRN" bench --dir "$dir" --nodes "127.0.0.1:$QUIC" --workload register-get --keys "$KEYS" \
        --duration 1 --warmup 0 --no-progress >/dev/null
    sleep "$SETTLE"
    local before_sectors
    before_sectors=$(disk_sectors)
    rm -f "$WORK/r.json"
    # Clients use nodes 1 and 3, so the wiped node's restart costs them no connection.
    "$CAIRN" bench --dir "$dir" --nodes "127.0.0.1:$QUIC,127.0.0.1:$((QUIC + 2))" \
        --workload counter-incr --keys 10000 --rate "$RATE" --concurrency 512 --warmup 0 \
        --duration 12 --no-progress --json "$WORK/r.json" >/dev/null &
    local bench=$! synced="n/a"
    sleep 3
    if [ "$wipe" = 1 ]; then
        local pid args t0
        pid=$(pgrep -f -- "--data $dir/node2 ")
        args=$(tr '\0' ' ' </proc/"$pid"/cmdline)
        kill -9 "$pid"
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
        rm -f "$dir"/node2/cairn.redb "$dir"/node2/cairn.redb.wal
        # shellcheck disable=SC2086 # the node's own command line, word for word
        $args >>"$WORK/node2-restart.log" 2>&1 &
        t0=$(date +%s.%N)
        synced="never"
        for _ in $(seq 600); do
            local left
            left=$(curl -s --max-time 1 "127.0.0.1:$((HTTP + 1))/v1/cluster" |
                python3 -c "import json,sys; print(len(json.load(sys.stdin).get('syncing', [])))" 2>/dev/null || true)
            if [ "$left" = 0 ]; then
                synced=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f} s')")
                break
            fi
            sleep 0.2
        done
    fi
    wait "$bench" || true
    local after_sectors repairs
    after_sectors=$(disk_sectors)
    repairs="$(metric "$HTTP" cairn_aae_keys_repaired_total) + $(metric "$((HTTP + 2))" cairn_aae_keys_repaired_total)"
    if ! python3 - "$WORK/r.json" "$wipe" "$round" "$synced" "$repairs" "$KEYS" \
        "$([ -n "$before_sectors" ] && [ -n "$after_sectors" ] &&
            echo "$(( (after_sectors - before_sectors) * 512 / 1000000 )) MB" || echo n/a)" <<'EOF'
import json, sys
path, wipe, round_, synced, repairs, keys, mb = sys.argv[1:]
try:
    d = json.load(open(path))
except (OSError, ValueError):
    sys.exit(f"round {round_}: the bench run failed (no report)")
l = d["latency_us"]
sent = sum(int(float(x)) for x in repairs.split("+"))
what = "wipe   " if wipe == "1" else "no wipe"
line = (f"round {round_} {what}: {d['throughput_ops_per_s']:.0f}/s p50 {l['p50'] / 1e3:.1f} "
        f"p99 {l['p99'] / 1e3:.1f} p99.9 {l['p999'] / 1e3:.1f} max {l['max'] / 1e3:.1f} ms, "
        f"errors {d['errors']}, disk written {mb}")
if wipe == "1":
    # The wiped node lacks the registers and the run's counters (10,000 keys).
    lacked = int(keys) + 10000
    line += (f"; synced after {synced}, repairs sent {sent} "
             f"({sent / lacked:.2f}x its {lacked} keys, counters included)")
print(line)
EOF
    then :; fi
    kill -TERM "$DEV" 2>/dev/null || true
    wait "$DEV" 2>/dev/null || true
    pkill -f -- "--data $dir/" 2>/dev/null || true
    while pgrep -f -- "--data $dir/" >/dev/null; do sleep 0.2; done
    DEV=""
}

echo "==> $KEYS keys, counter increments at $RATE/s for 12 s; node 2 wiped 3 s in (wipe runs)"
for round in $(seq "$ROUNDS"); do
    one_run "$round" 0
    one_run "$round" 1
done
