#!/usr/bin/env bash
# Runs every benchmark; each prints ours next to its baseline from the same run.
#   scripts/bench.sh                  # everything (about 17 minutes): criterion groups, the memory
#                                     # reports, the JetStream store and the NATS event bus against
#                                     # raw async-nats, actors against kameo and the raw store
#   scripts/bench.sh save_sequential  # only criterion groups matching a filter
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p aether-core --bench event_store -- "$@"
cargo bench -p aether-core --bench event_bus -- "$@"
if [ $# -eq 0 ]; then
  cargo bench -p aether-core --bench event_store_memory
  # Starts its own nats-server (>= 2.12); install one with scripts/install-nats-server.sh.
  NATS_SERVER_BIN="${NATS_SERVER_BIN:-$(scripts/install-nats-server.sh)}" \
    cargo bench -p aether-nats --bench jetstream_store
  NATS_SERVER_BIN="${NATS_SERVER_BIN:-$(scripts/install-nats-server.sh)}" \
    cargo bench -p aether-nats --bench nats_bus
  cargo bench -p aether-actor --bench local_ask
  cargo bench -p aether-actor --bench actor_memory
  NATS_SERVER_BIN="${NATS_SERVER_BIN:-$(scripts/install-nats-server.sh)}" \
    cargo bench -p aether-actor --bench jetstream_actors
fi
