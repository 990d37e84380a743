#!/usr/bin/env bash
# Cairn beside Redis on this machine, in one run: INCR and SADD with redis-benchmark
# against Redis in three durability tiers, and `cairn bench` counter-incr and set-add
# against one durable Cairn node (n=1) and a 3-node cluster (n=3, w=2), at the same
# concurrency, ROUNDS times each. Prints medians, Cairn/Redis ratios, and the servers'
# CPU per operation. Then the 3-node cluster's latency at half its median increment
# rate (open loop, ROUNDS runs of 2 x SECS), with the log commits over 5 ms during each
# run, warm-up included (from `cairn_store_commit_duration_seconds`): the disk's share of
# the tail; and the load generator's own lateness at p99.9 (`send_lateness_us`): its
# share, when it waits for CPU beside the servers.
#
#   benches/redis-compare.sh            # ROUNDS=3 CLIENTS=64 SECS=5
#   ROUNDS=1 SECS=2 benches/redis-compare.sh    # a quick look
#
# Installs redis-server and redis-tools from Debian if missing (needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-64}
SECS=${SECS:-5}
KEYS=${KEYS:-10000}
PIPELINE=${PIPELINE:-16}

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    echo "==> installing redis-server and redis-tools"
    sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
    $sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq redis-server redis-tools >/dev/null
fi

echo "==> building cairn (release)"
cargo build --release -q
CAIRN=target/release/cairn
WORK=$(mktemp -d /tmp/cairn-vs-redis.XXXXXX)
RESULTS=$WORK/results.tsv
TAILS=$WORK/tails.tsv
: > "$RESULTS"
: > "$TAILS"
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# CPU seconds (user + system) of a process, from /proc (USER_HZ = 100).
cpu() { awk '{ sub(/.*\) /, ""); print ($12 + $13) / 100 }' "/proc/$1/stat"; }

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RESULTS"; }

# ---- Redis -------------------------------------------------------------------------
redis_tier() { # name, extra redis-server args...
    local name=$1; shift
    local port=6390 dir=$WORK/redis-$name
    mkdir -p "$dir"
    redis-server --port $port --dir "$dir" --save "" --daemonize no "$@" >"$dir/log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    until redis-cli -p $port ping >/dev/null 2>&1; do sleep 0.1; done
    local n=$((SECS * 60000))
    for round in $(seq "$ROUNDS"); do
        for test in incr sadd; do
            for pipe in 1 $PIPELINE; do
                local c0; c0=$(cpu "$pid")
                local rps
                if [ "$test" = incr ]; then
                    rps=$(redis-benchmark -p $port -c "$CLIENTS" -n $n -r "$KEYS" -P "$pipe" -q --csv incr "counter:__rand_int__" | tail -1 | cut -d, -f2 | tr -d '"')
                else
                    rps=$(redis-benchmark -p $port -c "$CLIENTS" -n $n -r "$KEYS" -P "$pipe" -q --csv sadd "set:__rand_int__" "m:__rand_int__" | tail -1 | cut -d, -f2 | tr -d '"')
                fi
                local c1; c1=$(cpu "$pid")
                local us; us=$(awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN { printf "%.1f", (b - a) * 1e6 / n }')
                record "redis-$name P$pipe" "$test" "$rps" "$us"
                echo "   redis $name $test -P $pipe round $round: $rps op/s, server CPU $us us/op"
            done
        done
    done
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}

echo "==> Redis: no persistence, appendfsync everysec, appendfsync always"
redis_tier none --appendonly no
redis_tier everysec --appendonly yes --appendfsync everysec
redis_tier always --appendonly yes --appendfsync always

# ---- Cairn -------------------------------------------------------------------------
cairn_cluster() { # name, nodes, base ports
    local name=$1 nodes=$2 quic=$3 http=$4
    local dir=$WORK/cairn-$name
    "$CAIRN" dev --nodes "$nodes" --dir "$dir" --quic-port "$quic" --http-port "$http" >"$WORK/dev-$name.log" 2>&1 &
    local dev=$!
    PIDS+=("$dev")
    until grep -q "Ctrl-C" "$WORK/dev-$name.log" 2>/dev/null; do
        kill -0 "$dev" 2>/dev/null || { cat "$WORK/dev-$name.log"; exit 1; }
        sleep 0.2
    done
    local addrs pids
    addrs=$(seq 0 $((nodes - 1)) | awk -v b="$quic" '{ printf "%s127.0.0.1:%d", (NR > 1 ? "," : ""), b + $1 }')
    pids=$(pgrep -f -- "--data $dir/node" | paste -sd, -)
    for round in $(seq "$ROUNDS"); do
        for test in counter-incr set-add; do
            for batch in 1 $PIPELINE; do
                [ "$nodes" -gt 1 ] && [ "$batch" -gt 1 ] && continue
                # One bucket per test for every round, like redis-benchmark's keys: the
                # store holds KEYS counters and KEYS sets, as Redis does, rather than
                # growing by a fresh bucket each round.
                "$CAIRN" bench --dir "$dir" --nodes "$addrs" --workload "$test" --keys "$KEYS" \
                    --bucket "compare-$test" \
                    --concurrency "$CLIENTS" --batch "$batch" --warmup 1 --duration "$SECS" \
                    --no-progress --pids "$pids" --json "$WORK/r.json" >/dev/null
                local rps us
                rps=$(python3 -c "import json; print(round(json.load(open('$WORK/r.json'))['throughput_ops_per_s']))")
                us=$(python3 -c "import json; print(round(json.load(open('$WORK/r.json'))['server_cpu_us_per_op'], 1))")
                local t=incr; [ "$test" = set-add ] && t=sadd
                record "cairn-$name P$batch" "$t" "$rps" "$us"
                echo "   cairn $name $test batch $batch round $round: $rps op/s, server CPU $us us/op"
            done
        done
    done
    if [ "$nodes" -gt 1 ]; then
        half_peak_tail "$name" "$nodes" "$http" "$dir" "$addrs" "$pids"
    fi
    kill -TERM "$dev"; wait "$dev" 2>/dev/null || true
}

# "slow total": log commits over 5 ms and in all, summed over the nodes' /metrics.
# 5 ms, not the goal's 10: the three nodes share one disk here, and its stalls of 4-9 ms
# hit their logs together, so no quorum escapes them (ARCHITECTURE.md, "What the
# half-peak tail is made of").
# Fails (and the caller prints n/a) if a node does not answer or lacks the 5 ms bucket.
slow_commits() { # nodes, base http port
    python3 - "$1" "$2" <<'EOF'
import sys, urllib.request
slow = total = 0
for i in range(int(sys.argv[1])):
    url = f"http://127.0.0.1:{int(sys.argv[2]) + i}/metrics"
    found = {}
    for line in urllib.request.urlopen(url, timeout=5).read().decode().splitlines():
        for name in ('cairn_store_commit_duration_seconds_bucket{le="0.005"}',
                     "cairn_store_commit_duration_seconds_count"):
            if line.startswith(name + " "):
                found[name] = int(line.split()[-1])
    if len(found) != 2:
        sys.exit(f"{url}: no log commit histogram with a 5 ms bucket")
    within, count = found.values()
    slow += count - within
    total += count
print(slow, total)
EOF
}

# Open loop at half the median closed-loop increment rate: issue 8's tail goal.
half_peak_tail() { # name, nodes, base http port, dir, addrs, pids
    local name=$1 nodes=$2 http=$3 dir=$4 addrs=$5 pids=$6
    # Half the median, taken as the table below takes it.
    local rate
    rate=$(python3 - "$RESULTS" "cairn-$name P1" <<'EOF'
import statistics, sys
rps = [float(l.split("\t")[2]) for l in open(sys.argv[1]) if l.split("\t")[:2] == [sys.argv[2], "incr"]]
print(max(1, int(statistics.median(rps) / 2)))
EOF
)
    for round in $(seq "$ROUNDS"); do
        # A failed run is reported and skipped: the table above must still print.
        local before after line
        before=$(slow_commits "$nodes" "$http") || before=""
        if ! "$CAIRN" bench --dir "$dir" --nodes "$addrs" --workload counter-incr --keys "$KEYS" \
            --bucket compare-counter-incr --rate "$rate" --concurrency 512 --warmup 1 \
            --duration $((SECS * 2)) --no-progress --pids "$pids" --json "$WORK/r.json" >/dev/null; then
            echo "   cairn $name counter-incr at $rate/s round $round: the run failed"
            continue
        fi
        after=$(slow_commits "$nodes" "$http") || after=""
        line=$(python3 - "$WORK/r.json" "$before" "$after" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
l = d["latency_us"]
b, a = sys.argv[2].split(), sys.argv[3].split()
slow = f"{int(a[0]) - int(b[0])}/{int(a[1]) - int(b[1])}" if a and b else "n/a"
late = d.get("send_lateness_us", {}).get("p999")
late = f"{late / 1000:.1f}" if late is not None else "n/a"
print(f"{round(d['throughput_ops_per_s'])}\t{l['p50'] / 1000:.1f}\t{l['p99'] / 1000:.1f}"
      f"\t{l['p999'] / 1000:.1f}\t{late}\t{slow}")
EOF
)
        printf '%s\t%s\n' "$name" "$line" >> "$TAILS"
        echo "   cairn $name counter-incr at $rate/s round $round: $(echo "$line" | tr '\t' ' ')"
    done
}

echo "==> Cairn: one durable node (n=1), then three nodes (n=3, w=2), durability fsync"
cairn_cluster 1node 1 7100 8100
cairn_cluster 3nodes 3 7200 8200

# ---- Table -------------------------------------------------------------------------
echo
echo "median of $ROUNDS rounds, $CLIENTS clients, $KEYS keys; ratio = Cairn / Redis appendfsync always at the same pipelining"
python3 - "$RESULTS" <<'EOF'
import sys, statistics, collections
rows = collections.defaultdict(list)
cpu = collections.defaultdict(list)
for line in open(sys.argv[1]):
    system, test, rps, us = line.rstrip("\n").split("\t")
    rows[(system, test)].append(float(rps))
    cpu[(system, test)].append(float(us))
med = {k: statistics.median(v) for k, v in rows.items()}
print(f"{'system':<22} {'test':<5} {'op/s (median)':>14} {'[min max]':>20} {'server CPU us/op':>17} {'vs redis-always':>16}")
for (system, test), v in sorted(rows.items()):
    pipe = system.split()[-1]
    base = med.get((f"redis-always {pipe}", test))
    ratio = f"{med[(system, test)] / base:.2f}x" if base and system.startswith("cairn") else ""
    print(f"{system:<22} {test:<5} {med[(system, test)]:>14.0f} {f'[{min(v):.0f} {max(v):.0f}]':>20} {statistics.median(cpu[(system, test)]):>17.1f} {ratio:>16}")
EOF
echo
echo "3-node increments at half the median rate (open loop, latency from the intended send time; goal: p99.9 <= 10 ms)"
echo "'started late': the load generator's own delay in starting each request, part of the latency (its p99.9, ms)"
printf '%-8s %8s %8s %8s %9s %13s %26s\n' cluster 'op/s' 'p50 ms' 'p99 ms' 'p99.9 ms' 'started late' 'log commits >5 ms / all'
while IFS=$'\t' read -r name rps p50 p99 p999 late slow; do
    printf '%-8s %8s %8s %8s %9s %13s %26s\n' "$name" "$rps" "$p50" "$p99" "$p999" "$late" "$slow"
done < "$TAILS"
