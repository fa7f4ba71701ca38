#!/usr/bin/env bash
# Runs every benchmark; each criterion group prints ours next to its baseline from the same run.
#   scripts/bench.sh                  # everything (about 10 minutes), then the memory report
#   scripts/bench.sh save_sequential  # only criterion groups matching a filter
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p aether --bench event_store -- "$@"
cargo bench -p aether --bench event_bus -- "$@"
if [ $# -eq 0 ]; then
  cargo bench -p aether --bench event_store_memory
fi
