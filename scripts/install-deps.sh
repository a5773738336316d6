#!/usr/bin/env bash
# Installs what polyarch's build and tests need on Debian 12 (as root).
# Idempotent: packages already present are not downloaded again.
set -euo pipefail

PKGS=(
  ca-certificates curl jq openssl git gcc pkg-config
  iproute2                             # loopback in the namespaces the emulation tests make
  docker-registry apache2-utils        # the test registry (../shared/fixtures/registry.sh)
  skopeo umoci buildah                 # independent clients and peers the tests check results with
  runc                                 # the OCI runtime RUN steps and `polyarch run` use
  qemu-user-static binfmt-support      # user-mode emulators for foreign platforms
  podman uidmap                        # an independent runtime the tests run images with
  openssh-server openssh-client        # a real ssh node for the builder tests; ssh-agent for --ssh
  docker.io                            # Docker engines the engine and plugin tests start themselves, and a docker client
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing ${missing[*]}; run this script as root (bash $0)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Debian's mirrors sometimes answer "Mirror sync in progress" for one index;
  # retry, and go on when only that fails: the packages we need come from main.
  for i in 1 2 3; do
    if apt-get update; then break; fi
    echo "install-deps: apt-get update failed (try $i); retrying" >&2
    sleep $((i * 5))
  done
  # docker-registry's init script would start a registry on :5000 on every
  # interface; forbid service starts during the install.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  rc=1
  for i in 1 2 3; do
    if apt-get install -y --no-install-recommends "${missing[@]}"; then rc=0; break; fi
    echo "install-deps: apt-get install failed (try $i); retrying" >&2
    sleep $((i * 5))
    apt-get update || true
  done
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || { echo "install-deps: could not install ${missing[*]}" >&2; exit 1; }
fi

# The tests use whichever docker client comes first in PATH (docker.io's, or a
# newer one in /usr/local/bin).
if ! command -v docker >/dev/null 2>&1; then
  echo "install-deps: note: no docker client; the engine and plugin tests need one" >&2
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo not found: install a Rust toolchain (https://rustup.rs)" >&2
  exit 1
fi
