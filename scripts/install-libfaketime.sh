#!/usr/bin/env bash
# Makes sure libfaketime is installed, and prints the path of libfaketime.so.1.
#
# The clock-skew test (crates/aether-nats/tests/clock_skew.rs) preloads it to run a client whose
# wall clock is hours ahead of nats-server's. Looks in $AETHER_LIBFAKETIME, then the usual
# install places; when it is missing, installs Debian's `faketime` package with apt-get
# (non-interactive, no stdin; as root, or through `sudo -n`).
# All messages go to stderr; stdout is only the path, so callers can capture it.
set -euo pipefail

log() { echo "install-libfaketime: $*" >&2; }

find_library() {
  local arch path
  arch=$(uname -m)
  for path in "${AETHER_LIBFAKETIME:-}" \
    "/usr/lib/$arch-linux-gnu/faketime/libfaketime.so.1" \
    /usr/lib/faketime/libfaketime.so.1 \
    /usr/lib64/faketime/libfaketime.so.1 \
    /usr/local/lib/faketime/libfaketime.so.1; do
    if [ -n "$path" ] && [ -f "$path" ]; then echo "$path"; return 0; fi
  done
  return 1
}

if lib=$(find_library); then
  log "using $lib"
  echo "$lib"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  log "libfaketime not found and apt-get is not available; install libfaketime by hand" \
    "and set AETHER_LIBFAKETIME to the path of libfaketime.so.1"
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  log "libfaketime not found; install it as root: apt-get install -y faketime"
  exit 1
fi

log "libfaketime not found; installing Debian's faketime package"
apt_install() {
  ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends faketime </dev/null >&2
}
# A fresh machine may have no package lists yet: update them once if the first try fails.
if ! apt_install; then
  ${as_root[@]+"${as_root[@]}"} apt-get update </dev/null >&2
  if ! apt_install; then
    log "apt-get install failed; install it by hand: apt-get install -y faketime"
    exit 1
  fi
fi
if lib=$(find_library); then
  log "installed $lib"
  echo "$lib"
  exit 0
fi
log "installed faketime, but libfaketime.so.1 was not found in the usual places"
exit 1
