#!/usr/bin/env bash
# The long chaos run of the cluster actors (issue 16): node processes hosting the demo
# accounts, clients with command ids, a nemesis (SIGKILL and restart, SIGSTOP past the member
# TTL, NATS server restarts, nodes added and leaving), then the history checker. The short
# runs are part of scripts/test.sh; this one runs for AETHER_CHAOS_SECS seconds (default 600)
# on a 3-server NATS cluster (AETHER_CHAOS_NATS=cluster, the default) or one server
# (AETHER_CHAOS_NATS=single), in a release build. It prints the counts and every violation,
# and exits non-zero if the checker found any.
#
#   scripts/chaos.sh
#   AETHER_CHAOS_SECS=1200 AETHER_CHAOS_NATS=single scripts/chaos.sh
set -euo pipefail
cd "$(dirname "$0")/.."

NATS_SERVER_BIN=$(scripts/install-nats-server.sh)
export NATS_SERVER_BIN
export AETHER_CHAOS_SECS="${AETHER_CHAOS_SECS:-600}"
export AETHER_CHAOS_NATS="${AETHER_CHAOS_NATS:-cluster}"

cargo test --locked --release -p aether-actor --features cluster --test chaos -- \
  --ignored --exact chaos_long --nocapture
