#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 30) with nightly and cargo-fuzz,
# installing cargo-fuzz if it is missing. Usage: scripts/fuzz.sh [SECONDS]
#
# The decoders' corpora (fuzz/corpus/<target>, not committed) are seeded with real encodings
# of every kind from cairn-proto's tests, so the fuzzer starts past the envelope. A crash is
# saved under fuzz/artifacts/<target>/; replay it with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
targets=(decode_value decode_op decode_context decode_peer decode_frame crdt_laws merge_decoded)

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: needs a nightly toolchain (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo fuzz --help >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

echo "==> seeding the decoders' corpora"
CAIRN_FUZZ_SEEDS="$PWD/fuzz/corpus" cargo test -q -p cairn-proto --test proto fuzz_seeds -- --ignored

# merge_decoded reads two values from one input: a length byte, then the first value.
mkdir -p fuzz/corpus/merge_decoded
values=(fuzz/corpus/decode_value/*)
for left in "${values[@]:0:12}"; do
    for right in "${values[@]:0:12}"; do
        size=$(stat -c %s "$left")
        if [ "$size" -le 255 ]; then
            out="fuzz/corpus/merge_decoded/seed-$(basename "$left")-$(basename "$right")"
            { printf "\\$(printf %03o "$size")"; cat "$left" "$right"; } > "$out"
        fi
    done
done

for target in "${targets[@]}"; do
    echo "==> $target for ${seconds}s"
    mkdir -p "fuzz/corpus/$target"
    cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1
done
