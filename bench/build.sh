#!/usr/bin/env bash
# Times the same Dockerfile builds with polyarch and buildah, in one run, and
# prints a Markdown table of medians and ratios (polyarch / buildah).
#
#   bench/build.sh [RUNS]                 (default 3)
#   CASES="run multi" bench/build.sh 1    (a selection of cases; default all)
#   POLYARCH=path/to/polyarch bench/build.sh   (a prebuilt binary, no cargo build)
#
# Cases:
#   copy   a multi-stage build without RUN: 2,000 small files and 4 files of
#          8 MiB copied through a stage, ENV/LABEL/WORKDIR/USER metadata.
#          Columns: cold and warm.
#   run    a single-platform (local) build with RUN: three RUN steps write and
#          read 4,000 files with shell loops, a COPY of 500 context files, a
#          RUN that reads the copied files. Columns: cold, warm, and changed
#          (one context file edited: only the COPY and the RUN after it run).
#   multi  the Dockerfile of `run` for linux/amd64, linux/arm64 and
#          linux/arm/v7 (foreign RUN steps under QEMU through binfmt), one
#          index: `polyarch build --platform` against `buildah build
#          --platform ... --manifest`. Columns: cold and warm.
#   nodes  polyarch only: the Dockerfile of `run` for linux/amd64 and
#          linux/arm64, built (a) by one local node (the default builder)
#          and (b) by a builder of two nodes: this machine pinned to
#          linux/amd64 and a second node reached over ssh on 127.0.0.1
#          (an sshd the script starts on port $SSH_PORT, default 5322, with
#          generated keys) pinned to linux/arm64, with its own store.
#          Columns: cold and warm; ratio two nodes / one node, in a table
#          of its own. On one machine both nodes share the same cores.
# cold: empty store/storage (base image pulled, nothing cached; for nodes,
# both nodes' stores); warm: the same build again, nothing changed.
# buildah runs RUN steps with runc (`--runtime runc`), as polyarch does.
# Needs: buildah, runc, qemu-user-static binfmt handlers, docker-registry,
# python3, ../shared/fixtures; for nodes: openssh-server (/usr/sbin/sshd),
# openssh-client (ssh, ssh-keygen), root (the ssh node logs in as root).
set -euo pipefail
RUNS=${1:-3}
CASES=${CASES:-copy run multi nodes}
SSH_PORT=${SSH_PORT:-5322}
here=$(cd "$(dirname "$0")/.." && pwd)
fixtures=${POLYARCH_FIXTURES:-$here/../shared/fixtures}
work=$(mktemp -d /tmp/polyarch-bench-build.XXXXXX)
bh() { local d=$1; shift; buildah --root "$d/root" --runroot "$d/run" --storage-driver overlay "$@"; }
bh_clean() { # removes buildah containers and unmounts what it left under DIR
  [ -d "$1/root" ] || return 0
  bh "$1" rm --all >/dev/null 2>&1 || true
  bh "$1" rmi --all --force >/dev/null 2>&1 || true
  awk -v p="$1/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}
cleanup() {
  if [ -n "${sshd_pid:-}" ]; then kill "$sshd_pid" 2>/dev/null || true; wait "$sshd_pid" 2>/dev/null || true; fi
  for d in "$work"/bh*; do [ -d "$d" ] && bh_clean "$d"; done
  awk -v p="$work/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  "$fixtures/registry.sh" stop --port 5311 --dir "$work/reg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
has() { [[ " $CASES " == *" $1 "* ]]; }

if [ -n "${POLYARCH:-}" ]; then PA=$(realpath "$POLYARCH")   # a prebuilt binary
else cargo build --release --quiet --manifest-path "$here/Cargo.toml" -p polyarch; PA="$here/target/release/polyarch"; fi
eval "$("$fixtures/registry.sh" start --port 5311 --dir "$work/reg")"
python3 "$fixtures/base-images.py" "$REGISTRY" >/dev/null 2>&1

now() { date +%s.%N; }
declare -A T
measure() { # KEY CMD...: times CMD; on failure shows its output and stops
  local key=$1; shift; local t0 t1; t0=$(now)
  if ! "$@" >"$work/log" 2>&1; then echo "bench: $key failed:" >&2; tail -20 "$work/log" >&2; exit 1; fi
  t1=$(now); T[$key]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}') "; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
fresh() { for d in "$@"; do bh_clean "$d"; rm -rf "$d"; done; }

# The contexts.
ctx=$work/ctx
mkdir -p "$ctx/small" "$ctx/big" "$work/rctx/src"
python3 - "$ctx" "$work/rctx" <<'PY'
import os, sys
ctx, rctx = sys.argv[1], sys.argv[2]
for i in range(2000):
    d = os.path.join(ctx, "small", f"d{i % 40:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:04d}.txt"), "w") as f:
        f.write(f"file {i}\n" * (i % 50 + 1))
for i in range(4):
    with open(os.path.join(ctx, "big", f"blob{i}.bin"), "wb") as f:
        f.write(os.urandom(8 << 20))
for i in range(500):
    d = os.path.join(rctx, "src", f"m{i % 10}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"s{i:03d}.txt"), "w") as f:
        f.write(f"source {i}\n" * (i % 20 + 1))
PY
cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM $REGISTRY/library/busybox:latest AS assets
COPY small/ /assets/small/
COPY big/ /assets/big/
WORKDIR /assets

FROM $REGISTRY/library/busybox:latest
ENV APP_HOME=/srv/app
LABEL org.opencontainers.image.title=bench
WORKDIR /srv/app
COPY --from=assets /assets /srv/app/assets
USER nobody
CMD ["sh"]
DOCKERFILE
# No ARG and no BUILDPLATFORM/TARGETPLATFORM: the FROM resolves per platform.
cat > "$work/rctx/Dockerfile" <<DOCKERFILE
FROM $REGISTRY/library/busybox:latest
RUN mkdir -p /data/a && for i in \$(seq 1 2000); do echo "a \$i" > /data/a/f\$i; done
RUN mkdir -p /data/b && for i in \$(seq 1 2000); do echo "b \$i \$(( i * i ))" > /data/b/f\$i; done
RUN for d in a b; do cat /data/\$d/* | wc -l > /data/\$d.count; done && du -s /data > /data/du.txt
COPY src/ /src/
RUN find /src -type f | wc -l > /src.count && cat /src/*/* | md5sum > /src.sum && sort -r /src/*/* | head -3
CMD ["sh"]
DOCKERFILE

MULTI=linux/amd64,linux/arm64,linux/arm/v7
pa_copy()  { POLYARCH_ROOT=$1 "$PA" build --progress quiet -t bench/copy:latest "$ctx"; }
bh_copy()  { bh "$1" bud --layers --quiet --tls-verify=false --format oci -t bench/copy:latest "$ctx"; }
pa_run()   { POLYARCH_ROOT=$1 "$PA" build --progress quiet -t bench/run:latest "$work/rctx"; }
bh_run()   { bh "$1" bud --layers --quiet --runtime runc --tls-verify=false --format oci -t bench/run:latest "$work/rctx"; }
pa_multi() { POLYARCH_ROOT=$1 "$PA" build --progress quiet --platform "$MULTI" -t bench/multi:latest "$work/rctx"; }
bh_multi() { bh "$1" build --layers --quiet --runtime runc --tls-verify=false --format oci \
               --platform "$MULTI" --manifest bench/multi:latest "$work/rctx"; }
touch_ctx() { echo "changed $1 $(now)" >> "$work/rctx/src/m3/s003.txt"; }

# nodes: an sshd on 127.0.0.1 for the second node, and the builder `duo`.
NODES=linux/amd64,linux/arm64
if has nodes; then
  s=$work/ssh; mkdir -p "$s" /run/sshd
  ssh-keygen -q -t ed25519 -N '' -C host -f "$s/host_ed25519"
  ssh-keygen -q -t ed25519 -N '' -C client -f "$s/id_ed25519"
  cp "$s/id_ed25519.pub" "$s/authorized_keys"
  cat > "$s/sshd_config" <<SSHD
ListenAddress 127.0.0.1
HostKey $s/host_ed25519
AuthorizedKeysFile $s/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
PidFile $s/sshd.pid
SSHD
  if (exec 3<>"/dev/tcp/127.0.0.1/$SSH_PORT") 2>/dev/null; then
    echo "bench: port $SSH_PORT is taken; set SSH_PORT" >&2; exit 1; fi
  /usr/sbin/sshd -D -e -f "$s/sshd_config" -p "$SSH_PORT" </dev/null >/dev/null 2>"$s/sshd.log" &
  sshd_pid=$!
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$SSH_PORT") 2>/dev/null && break; sleep 0.1; done
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$SSH_PORT") 2>/dev/null; then
    echo "bench: sshd did not listen:" >&2; cat "$s/sshd.log" >&2; exit 1; fi
  # The far node's polyarch: the same binary with its own store.
  printf '#!/bin/sh\nPOLYARCH_ROOT=%s exec %s "$@"\n' "$work/far-store" "$PA" > "$work/far-polyarch"
  chmod +x "$work/far-polyarch"
  export XDG_CONFIG_HOME=$work/xdg POLYARCH_SSH="ssh -i $s/id_ed25519 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
  unset POLYARCH_BUILDER
  "$PA" builder create --name duo --node here --platform linux/amd64 local >/dev/null
  "$PA" builder create --name duo --append --node far --platform linux/arm64 \
    --remote-polyarch "$work/far-polyarch" "ssh://root@127.0.0.1:$SSH_PORT" >/dev/null
fi
pa_one()   { POLYARCH_ROOT=$1 "$PA" build --builder default --progress quiet --platform "$NODES" -t bench/nodes:latest "$work/rctx"; }
pa_two()   { POLYARCH_ROOT=$1 "$PA" build --builder duo --progress quiet --platform "$NODES" -t bench/nodes:latest "$work/rctx"; }
pa_fresh() { # empty polyarch stores: unmounts what is left under each DIR, removes it
  for d in "$@"; do
    awk -v p="$d/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$d"
  done; }

for i in $(seq 1 "$RUNS"); do
  if has copy; then
    fresh "$work/pa" "$work/bh"
    measure copy-pa-cold pa_copy "$work/pa"
    measure copy-pa-warm pa_copy "$work/pa"
    measure copy-bh-cold bh_copy "$work/bh"
    measure copy-bh-warm bh_copy "$work/bh"
  fi
  if has run; then
    fresh "$work/pa" "$work/bh"
    measure run-pa-cold pa_run "$work/pa"
    measure run-pa-warm pa_run "$work/pa"
    measure run-bh-cold bh_run "$work/bh"
    measure run-bh-warm bh_run "$work/bh"
    touch_ctx "$i"
    measure run-pa-changed pa_run "$work/pa"
    measure run-bh-changed bh_run "$work/bh"
  fi
  if has multi; then
    fresh "$work/pa" "$work/bh"
    measure multi-pa-cold pa_multi "$work/pa"
    measure multi-pa-warm pa_multi "$work/pa"
    measure multi-bh-cold bh_multi "$work/bh"
    measure multi-bh-warm bh_multi "$work/bh"
  fi
  if has nodes; then # one node first in odd runs, two nodes first in even ones
    for n in $( ((i % 2)) && echo one two || echo two one); do
      pa_fresh "$work/pa" "$work/far-store"
      measure "nodes-$n-cold" "pa_$n" "$work/pa"
      measure "nodes-$n-warm" "pa_$n" "$work/pa"
    done
    pa_fresh "$work/pa" "$work/far-store"
  fi
  fresh "$work/pa" "$work/bh"
done

row() { [ -n "${T[$2]:-}" ] || return 0; local p b; p=$(median <<<"${T[$2]}"); b=$(median <<<"${T[$3]}")
  printf '| %s | %.3f s | %.3f s | %.2f |\n' "$1" "$p" "$b" "$(awk -v a="$p" -v b="$b" 'BEGIN{print a/b}')"; }
row_nodes() { # the same, with the ratio of the second column to the first
  [ -n "${T[$2]:-}" ] || return 0; local o t; o=$(median <<<"${T[$2]}"); t=$(median <<<"${T[$3]}")
  printf '| %s | %.3f s | %.3f s | %.2f |\n' "$1" "$o" "$t" "$(awk -v a="$o" -v b="$t" 'BEGIN{print b/a}')"; }
echo "polyarch $("$PA" --version | awk '{print $2}'), $(buildah --version), $(runc --version | head -1); $RUNS runs each, medians; $(nproc) cores; cases: $CASES"
if has copy || has run || has multi; then
  echo
  echo "| build | polyarch | buildah | polyarch / buildah |"
  echo "|---|---|---|---|"
  row "multi-stage COPY build, cold" copy-pa-cold copy-bh-cold
  row "multi-stage COPY build, warm (nothing changed)" copy-pa-warm copy-bh-warm
  row "RUN build, cold" run-pa-cold run-bh-cold
  row "RUN build, warm (nothing changed)" run-pa-warm run-bh-warm
  row "RUN build, one context file changed" run-pa-changed run-bh-changed
  row "3-platform RUN build, cold" multi-pa-cold multi-bh-cold
  row "3-platform RUN build, warm (nothing changed)" multi-pa-warm multi-bh-warm
fi
if has nodes; then
  echo
  echo "| build | one node | two nodes | two nodes / one node |"
  echo "|---|---|---|---|"
  row_nodes "2-platform RUN build, cold" nodes-one-cold nodes-two-cold
  row_nodes "2-platform RUN build, warm (nothing changed)" nodes-one-warm nodes-two-warm
fi
