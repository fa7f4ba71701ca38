#!/usr/bin/env bash
# Instructions per cross-node query, ours and raw request/reply, counted by valgrind's
# callgrind in the `cluster_actors` benchmark's throughput case (1'): a figure that does not
# move with the machine's load, unlike the throughput ratio, so that a change to the query
# path can be judged on a shared, noisy machine. Not a substitute for the benchmark: it counts
# user-space instructions of the benchmark process (both nodes and the baseline's client and
# responder), not the server, the kernel or the scheduling.
#
#   scripts/query-instructions.sh          # ours and raw
#   SIDES=ours scripts/query-instructions.sh
#
# Each side runs twice (64 callers × 20 and × 120 queries); the difference over the 6 400
# extra queries leaves out the set-up. Needs valgrind and nats-server (NATS_SERVER_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
NATS_SERVER_BIN=${NATS_SERVER_BIN:-$(scripts/install-nats-server.sh)}
export NATS_SERVER_BIN
cargo bench --locked -p aether-actor --features cluster --bench cluster_actors --no-run 2>/dev/null
bench=$(cargo bench --locked -p aether-actor --features cluster --bench cluster_actors --no-run 2>&1 \
  | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() { # side, calls per caller
  AETHER_BENCH_ONLY=$1 AETHER_BENCH_QUICK=1 AETHER_BENCH_ROUNDS=1 AETHER_BENCH_LATENCY_CALLS=1 \
    AETHER_BENCH_CALLS_PER_CALLER=$2 valgrind --tool=callgrind \
    --callgrind-out-file="$out/$1-$2.out" "$bench" --bench query 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
for side in ${SIDES:-ours raw}; do
  few=$(count "$side" 20)
  many=$(count "$side" 120)
  echo "$side: $(( (many - few) / 6400 )) instructions per query"
done
