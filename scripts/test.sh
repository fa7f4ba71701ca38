#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, docs, and every test (unit,
# integration, property, conformance, doc tests), then the examples: two_nodes and
# cluster_actors against real nats-servers, quickstart and actors twice on the embedded store
# (the second run resumes the first), actors on NATS. Installs nats-server 2.15.1 and libfaketime (for the clock-skew test) if they are
# missing.
#
#   scripts/test.sh            # everything
#   scripts/test.sh -p aether-core   # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

# A clean CI build gains nothing from incremental compilation, whose caches took 6 GB of disk
# in a full run; a developer's repeated runs keep it.
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi

step() { printf '\n== %s\n' "$*" >&2; }

step "nats-server"
NATS_SERVER_BIN=$(scripts/install-nats-server.sh)
export NATS_SERVER_BIN

step "libfaketime (the clock-skew test runs a client whose clock is ahead of the server's)"
AETHER_LIBFAKETIME=$(scripts/install-libfaketime.sh)
export AETHER_LIBFAKETIME

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --locked --quiet

step "cargo test"
cargo test --workspace --all-features --locked --no-fail-fast "$@"

step "example: two_nodes (two nodes on NATS; exits non-zero if any delivery check fails)"
cargo run --locked -p aether --example two_nodes

step "example: cluster_actors (three nodes, one crashes; exits non-zero if any check fails)"
cargo run --locked -p aether --features actor,cluster --example cluster_actors

step "example: actors --memory (bank accounts in memory; exits non-zero if any check fails)"
cargo run --locked -p aether --features actor --example actors -- --memory

examples_data=$(mktemp -d)
step "example: quickstart, twice on one data directory (the second run goes on from the first)"
cargo run --locked --example quickstart -- --data "$examples_data/quickstart"
cargo run --locked --example quickstart -- --data "$examples_data/quickstart" \
  | tee "$examples_data/quickstart-second.log"
grep -q "already open from an earlier run" "$examples_data/quickstart-second.log"

step "example: actors, twice on the embedded store (the second run resumes the accounts)"
cargo run --locked -p aether --features actor --example actors -- --data "$examples_data/actors"
cargo run --locked -p aether --features actor --example actors -- --data "$examples_data/actors" \
  | tee "$examples_data/actors-second.log"
grep -q "already applied in an earlier run" "$examples_data/actors-second.log"
rm -rf "$examples_data"

step "example: actors --nats, twice on one nats-server (the second run resumes the accounts)"
actors_dir=$(mktemp -d)
actors_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$NATS_SERVER_BIN" -js -a 127.0.0.1 -p "$actors_port" -sd "$actors_dir" >"$actors_dir/server.log" 2>&1 &
actors_server=$!
trap 'kill "$actors_server" 2>/dev/null || true; rm -rf "$actors_dir"' EXIT
for _ in $(seq 50); do
  (echo >"/dev/tcp/127.0.0.1/$actors_port") 2>/dev/null && break
  sleep 0.2
done
cargo run --locked -p aether --features actor --example actors -- --nats "nats://127.0.0.1:$actors_port"
cargo run --locked -p aether --features actor --example actors -- --nats "nats://127.0.0.1:$actors_port" \
  | tee "$actors_dir/second.log"
grep -q "already applied in an earlier run" "$actors_dir/second.log"
