#!/usr/bin/env bash
# Runs every benchmark (criterion groups print ours next to the baseline), then the memory report.
#   scripts/bench.sh                 # all
#   scripts/bench.sh save_sequential # only criterion groups matching a filter
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p aether --bench event_store -- "$@"
if [ $# -eq 0 ]; then
  cargo bench -p aether --bench event_store_memory
fi
