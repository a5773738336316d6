#!/usr/bin/env bash
# Times the same multi-platform builds with polyarch, BuildKit (the one built
# into Docker Engine 20.10, Debian's docker.io) and buildah, in one run, and
# prints a Markdown table of medians, ratios and peak RSS.
#
#   bench/buildkit.sh [RUNS]                     (default 2)
#   CASES="run cross" bench/buildkit.sh 1        (a selection; default all)
#   POLYARCH=path/to/polyarch bench/buildkit.sh  (a prebuilt binary, no cargo build)
#   CASES=apt APT_MIRROR_DIR=/var/tmp/apt-bench bench/buildkit.sh 2  (see the apt case)
#
# Cases (6 platforms: linux/amd64, linux/arm64, linux/arm/v7, linux/ppc64le,
# linux/s390x, linux/386, unless said otherwise):
#   run         FROM busybox; a RUN writing and reading 3,000 files with shell
#               loops; a COPY of 100 context files; a RUN reading them.
#   multistage  a build stage FROM busybox with a COPY of a 200-file context
#               and a RUN over it; the final stage FROM busybox with COPY --from.
#   cross       FROM --platform=$BUILDPLATFORM busybox AS build: one RUN per
#               TARGETPLATFORM, native (no emulation); a final stage per
#               platform with COPY --from=build.
#   apt         3 platforms (amd64, arm64, arm/v7): FROM debian:bookworm-slim
#               and RUN apt-get update && apt-get install of hello, under
#               emulation, from a Debian archive on loopback, never Debian's
#               own (benchmarks send no traffic beyond loopback). Only with
#               CASES naming it and one of:
#                 APT_MIRROR_DIR=DIR  an archive made by bench/apt-mirror.sh
#                     DIR (run here first if DIR is not one yet: a package
#                     download, before any timing), served by the script on
#                     127.0.0.1 and a free port (python3 -m http.server),
#                     stopped at exit;
#                 APT_MIRROR=http://127.0.0.1:PORT/...  one the caller serves
#                     (a bookworm main archive for amd64, arm64 and armhf).
#               The RUN replaces the image's apt sources with
#               `deb [trusted=yes] MIRROR bookworm main`.
# The floor (run and multistage): each platform's RUN commands alone in a
# chroot of its busybox root with the context, all platforms at once under
# the same QEMU; printed in a second table beside the cold builds.
# Each tool ends with the index in the registry fixture:
#   polyarch  build --platform LIST --push -t REG/pa-CASE-N:latest
#   BuildKit  one `docker build --platform P --network host -t REG/bk-CASE-N:P`
#             per platform, all started at once, each followed by `docker
#             push`; then `docker manifest create` + `push` (a newer client)
#   buildah   build --platform LIST --manifest M, then `manifest push --all`;
#             buildah 1.28 does not set BUILDPLATFORM: --build-arg gives it
# cold: empty store/storage/data root (dockerd is restarted on a new data
# root, outside the timing); warm: the same build and push again.
# Peak RSS: polyarch and buildah from GNU time (/usr/bin/time -v, the
# largest of the command and its children); BuildKit: the VmHWM of dockerd
# (BuildKit runs inside it in 20.10), reset with /proc/PID/clear_refs before
# each build, plus the largest `docker` client process under GNU time.
# The private engine: dockerd on a unix socket under the work directory,
# --iptables=false --bridge=none, its own containerd; stopped at the end.
# Needs: root, buildah, runc, qemu-user-static binfmt handlers, python3,
# docker-registry, GNU time, docker.io (installed if missing), the Docker
# client at /usr/local/bin/docker (manifest commands), ../shared/fixtures.
set -euo pipefail
RUNS=${1:-2}
CASES=${CASES:-run multistage cross}
if [[ " $CASES " == *" apt "* ]] && [ -z "${APT_MIRROR_DIR:-}" ]; then
  case "${APT_MIRROR:-}" in
    http://127.0.0.1:*|http://\[::1\]:*|http://localhost:*) ;;
    *) echo "bench: the apt case needs APT_MIRROR_DIR=DIR (see bench/apt-mirror.sh) or APT_MIRROR=http://127.0.0.1:PORT/... (a Debian mirror on loopback); skipped" >&2
       CASES=${CASES//apt/} ;;
  esac
fi
PORT=${PORT:-5316}
here=$(cd "$(dirname "$0")/.." && pwd)
fixtures=${POLYARCH_FIXTURES:-$here/../shared/fixtures}
work=$(mktemp -d /tmp/pa-bk.XXXXXX) # short: dockerd's socket paths live under it
DK=$work/dk
NEWDOCKER=${NEWDOCKER:-/usr/local/bin/docker}
has() { [[ " $CASES " == *" $1 "* ]]; }
log() { echo "bench: $*" >&2; }

# docker.io, without starting its service.
if ! [ -x /usr/sbin/dockerd ] || ! [ -x /usr/bin/docker ]; then
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1; fi
  apt-get update >&2 || log "apt-get update reported errors; trying install anyway"
  rc=0; DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io >&2 || rc=$?
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || { log "apt-get install docker.io failed"; exit 1; }
fi
OLDDOCKER=/usr/bin/docker
if [ -S /run/containerd/containerd.sock ]; then # dockerd would use it instead of its own
  log "a system containerd listens on /run/containerd/containerd.sock; stop it first"; exit 1; fi

bh() { local d=$1; shift; buildah --root "$d/root" --runroot "$d/run" --storage-driver overlay "$@"; }
unmount_below() { awk -v p="$1/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r |
  while read -r m; do umount -l "$m" 2>/dev/null || true; done; }
fresh() { # empties the polyarch/buildah stores DIR...
  for d in "$@"; do
    if [ -d "$d/root" ]; then bh "$d" rm --all >/dev/null 2>&1 || true; bh "$d" rmi --all --force >/dev/null 2>&1 || true; fi
    unmount_below "$d"; rm -rf "$d"
  done; }
dk_pid() { cat "$DK/pid" 2>/dev/null || true; }
dk_stop() { # stops the private engine and whatever it started
  local pid; pid=$(dk_pid)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  # containerd and shims of this engine: their command lines name $DK.
  local p
  for p in $(pgrep -f "$DK/" || true); do kill -9 "$p" 2>/dev/null || true; done
  unmount_below "$DK"
  rm -rf "$DK"; }
dk_start() { # a fresh engine on a new data root
  dk_stop; mkdir -p "$DK"
  dockerd --data-root "$DK/root" --exec-root "$DK/exec" --pidfile "$DK/pid" --host "unix://$DK/sock" \
    --iptables=false --ip-masq=false --bridge=none --registry-mirror "http://$REGISTRY" \
    --insecure-registry "$REGISTRY" >"$DK/log" 2>&1 &
  for _ in $(seq 1 300); do
    [ -S "$DK/sock" ] && DOCKER_HOST=unix://$DK/sock "$OLDDOCKER" version >/dev/null 2>&1 && return 0
    sleep 0.1; done
  log "dockerd did not start:"; tail -20 "$DK/log" >&2; exit 1; }
apt_http_stop() { # the loopback server of APT_MIRROR_DIR
  local pid; pid=$(cat "$work/apt-http.pid" 2>/dev/null || true)
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -f "$work/apt-http.pid"; }
cleanup() {
  apt_http_stop
  dk_stop
  fresh "$work/pa" "$work/bh"
  unmount_below "$work"
  "$fixtures/registry.sh" stop --port "$PORT" --dir "$work/reg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${POLYARCH:-}" ]; then PA=$(realpath "$POLYARCH")
else cargo build --release --quiet --manifest-path "$here/Cargo.toml" -p polyarch; PA="$here/target/release/polyarch"; fi
eval "$("$fixtures/registry.sh" start --port "$PORT" --dir "$work/reg")"
# The apt case's archive, served on loopback: the server binds port 0 and
# prints the port it got.
if has apt && [ -n "${APT_MIRROR_DIR:-}" ]; then
  bash "$here/bench/apt-mirror.sh" "$APT_MIRROR_DIR" || { log "bench/apt-mirror.sh $APT_MIRROR_DIR failed"; exit 1; }
  python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$APT_MIRROR_DIR" >"$work/apt-http.log" 2>&1 &
  echo $! >"$work/apt-http.pid"
  for _ in $(seq 1 100); do
    aport=$(sed -nE 's/^Serving HTTP on 127\.0\.0\.1 port ([0-9]+).*/\1/p' "$work/apt-http.log")
    [ -n "$aport" ] && break; sleep 0.1; done
  [ -n "${aport:-}" ] || { log "the apt archive's server did not start:"; cat "$work/apt-http.log" >&2; exit 1; }
  APT_MIRROR=http://127.0.0.1:$aport/
  curl -fsS "${APT_MIRROR}dists/bookworm/Release" >/dev/null || { log "$APT_MIRROR does not serve dists/bookworm/Release"; exit 1; }
  log "apt archive $APT_MIRROR_DIR on $APT_MIRROR"
fi
if has apt; then
  python3 "$fixtures/base-images.py" "$REGISTRY" --debian \
    --debian-platforms linux/amd64,linux/arm64,linux/arm/v7 >/dev/null 2>"$work/fixture.log" ||
    { log "base images failed:"; tail -20 "$work/fixture.log" >&2; exit 1; }
else python3 "$fixtures/base-images.py" "$REGISTRY" >/dev/null 2>&1; fi
export DOCKER_CONFIG=$work/docker-config DOCKER_BUILDKIT=1
mkdir -p "$DOCKER_CONFIG"; echo "{}" > "$DOCKER_CONFIG/config.json"

# Contexts: $work/ctx/CASE with a Dockerfile each.
BB=$REGISTRY/library/busybox:latest
mkdir -p "$work/ctx"/{run,multistage,cross,apt}
python3 - "$work/ctx" <<'PY'
import os, sys
ctx = sys.argv[1]
for case, n in (("run", 100), ("multistage", 200)):
    for i in range(n):
        d = os.path.join(ctx, case, "src", f"m{i % 10}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"s{i:03d}.txt"), "w") as f:
            f.write(f"source {i}\n" * (i % 30 + 1))
PY
cat > "$work/ctx/run/Dockerfile" <<DOCKERFILE
FROM $BB
RUN mkdir -p /data && for i in \$(seq 1 3000); do echo "line \$i \$(( i * i ))" > /data/f\$i; done && cat /data/* | wc -l > /data.count && du -s /data > /data.du
COPY src/ /src/
RUN find /src -type f | wc -l > /src.count && cat /src/*/* | md5sum > /src.sum
CMD ["sh"]
DOCKERFILE
cat > "$work/ctx/multistage/Dockerfile" <<DOCKERFILE
FROM $BB AS build
COPY src/ /src/
RUN mkdir -p /out && for f in /src/*/*; do sort -r "\$f" | md5sum > "/out/\$(basename "\$f").sum"; done && cat /out/*.sum | md5sum > /out/all.sum

FROM $BB
COPY --from=build /out /srv/out
CMD ["sh"]
DOCKERFILE
cat > "$work/ctx/cross/Dockerfile" <<DOCKERFILE
FROM --platform=\$BUILDPLATFORM $BB AS build
ARG TARGETPLATFORM
RUN mkdir -p /out && for i in \$(seq 1 3000); do echo "\$TARGETPLATFORM \$i" > /out/f\$i; done && tar -cf /out.tar /out && md5sum /out.tar > /out.sum

FROM $BB
COPY --from=build /out.tar /out.sum /
CMD ["sh"]
DOCKERFILE
APT_PKG=${APT_PKG:-hello}
cat > "$work/ctx/apt/Dockerfile" <<DOCKERFILE
FROM $REGISTRY/library/debian:bookworm-slim
RUN rm -f /etc/apt/sources.list.d/* && echo "deb [trusted=yes] ${APT_MIRROR:-} bookworm main" > /etc/apt/sources.list && apt-get update && apt-get install -y --no-install-recommends $APT_PKG && rm -rf /var/lib/apt/lists/*
DOCKERFILE
SIX=linux/amd64,linux/arm64,linux/arm/v7,linux/ppc64le,linux/s390x,linux/386
THREE=linux/amd64,linux/arm64,linux/arm/v7
platforms() { if [ "$1" = apt ]; then echo "$THREE"; else echo "$SIX"; fi; }

# The apt case needs the loopback mirror from inside a container on the host
# network: checked once with polyarch, the arm64 image under QEMU.
if has apt; then
  printf 'FROM %s/library/debian:bookworm-slim\nRUN rm -f /etc/apt/sources.list.d/* && echo "deb [trusted=yes] %s bookworm main" > /etc/apt/sources.list && apt-get update\n' "$REGISTRY" "$APT_MIRROR" > "$work/probe.Dockerfile"
  if ! POLYARCH_ROOT=$work/probe timeout 300 "$PA" build --progress plain --network host --platform linux/arm64 \
      -f "$work/probe.Dockerfile" "$work/ctx/apt" >"$work/probe.log" 2>&1 || grep -qE '(^|[[:space:]])(Err:|W: Failed)' "$work/probe.log"; then
    log "apt case skipped: a container on the host network cannot reach $APT_MIRROR:"
    tail -5 "$work/probe.log" >&2; CASES=${CASES//apt/}
  elif [ -f "$work/apt-http.pid" ] && ! grep -q 'GET /dists/bookworm/main/binary-arm64/Packages' "$work/apt-http.log"; then
    log "apt case skipped: the probe's apt-get update did not read the arm64 index from $APT_MIRROR"
    CASES=${CASES//apt/}
  fi
  fresh "$work/probe"
fi

now() { date +%s.%N; }
declare -A T RSS
LOADS=""
record_load() { LOADS+="$(cut -d' ' -f1 /proc/loadavg) "; }
# timed KEY CMD...: times CMD (a shell function), keeps seconds in T[KEY].
timed() {
  local key=$1; shift; local t0 t1; t0=$(now)
  if ! "$@" >"$work/log" 2>&1; then log "$key failed:"; tail -30 "$work/log" >&2; exit 1; fi
  t1=$(now); T[$key]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}') "
  log "$key $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') s (load $(cut -d' ' -f1 /proc/loadavg))"; }
maxrss() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1"; }
keep_rss() { # KEY KiB: the largest over the runs
  local cur=${RSS[$1]:-0}; [ "$2" -gt "$cur" ] && RSS[$1]=$2; return 0; }

# polyarch and buildah: one command under GNU time.
pa_build() { # CASE REPO STORE
  /usr/bin/time -v -o "$work/time.pa" env POLYARCH_ROOT="$3" "$PA" build --progress quiet --network host \
    --platform "$(platforms "$1")" --push -t "$REGISTRY/$2:latest" "$work/ctx/$1"; }
bh_build() { # CASE REPO STORE
  /usr/bin/time -v -o "$work/time.bh" buildah --root "$3/root" --runroot "$3/run" --storage-driver overlay \
    build --layers --quiet --runtime runc --network host --tls-verify=false --format oci \
    --build-arg BUILDPLATFORM="linux/$(dpkg --print-architecture)" \
    --platform "$(platforms "$1")" --manifest "bench/$2" "$work/ctx/$1" &&
  /usr/bin/time -v -o "$work/time.bh2" buildah --root "$3/root" --runroot "$3/run" --storage-driver overlay \
    manifest push --all --quiet --tls-verify=false "bench/$2" "docker://$REGISTRY/$2:latest"; }
# BuildKit: one build + push per platform at once, then the manifest list.
tagof() { echo "${1#linux/}" | tr -d /; }
bk_one() { # CASE REPO PLATFORM
  local t; t=$(tagof "$3")
  /usr/bin/time -v -o "$work/time.bk.$t" env DOCKER_HOST="unix://$DK/sock" "$OLDDOCKER" build --progress plain \
    --platform "$3" --network host -t "$REGISTRY/$2:$t" "$work/ctx/$1" >"$work/bk.$t.log" 2>&1 &&
  DOCKER_HOST="unix://$DK/sock" "$OLDDOCKER" push "$REGISTRY/$2:$t" >>"$work/bk.$t.log" 2>&1; }
bk_build() { # CASE REPO
  local pids=() p rc=0 refs=()
  for p in $(platforms "$1" | tr , ' '); do
    bk_one "$1" "$2" "$p" & pids+=($!); refs+=("$REGISTRY/$2:$(tagof "$p")"); done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  if [ "$rc" != 0 ]; then for p in "$work"/bk.*.log; do echo "== $p"; tail -15 "$p"; done; return 1; fi
  "$NEWDOCKER" manifest create --insecure "$REGISTRY/$2:latest" "${refs[@]}" &&
  "$NEWDOCKER" manifest push --insecure --purge "$REGISTRY/$2:latest"; }
bk_rss() { # the largest client's peak, in KiB
  local f m=0 v; for f in "$work"/time.bk.*; do v=$(maxrss "$f"); [ "$v" -gt "$m" ] && m=$v; done; echo "$m"; }
dk_reset_peak() { echo 5 > "/proc/$(dk_pid)/clear_refs"; }
dk_peak() { awk '/^VmHWM/ {print $2}' "/proc/$(dk_pid)/status"; }

check_index() { # CASE REPO: the index pushed names each platform of CASE once
  local want got
  want=$(platforms "$1" | tr , '\n' | sort | tr '\n' ' ')
  got=$(curl -fsS -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json' \
      "http://$REGISTRY/v2/$2/manifests/latest" | python3 -c '
import json, sys
for m in json.load(sys.stdin)["manifests"]:
    p = m.get("platform", {})
    if p.get("os") == "unknown": continue  # attestation entries
    v = p.get("variant")
    if p.get("architecture") == "arm64": v = None
    print("/".join(x for x in (p.get("os"), p.get("architecture"), v) if x))' | sort | tr '\n' ' ')
  [ "$got" = "$want" ] || { log "$2: the index names [$got], not [$want]"; exit 1; }; }
# The floor of the run and multistage cases: their RUN commands alone, with
# no build tool. Each platform's busybox with the case's context copied in
# is made once, untimed (polyarch -o type=local); then, timed, each
# platform's RUN commands run in order through `chroot DIR /bin/sh -c`, all
# platforms at once, the foreign ones under QEMU through the same binfmt
# handlers: no container, layer, cache, pull or push. No tool can build the
# case faster than this on the same machine.
floor_case() { [ "$1" = run ] || [ "$1" = multistage ]; }
floor_prepare() { # CASE: $work/floor/CASE/pristine/TAG for each platform
  local c=$1 p d=$work/floor/$1
  [ -d "$d/pristine" ] && return 0
  printf 'FROM %s\nCOPY src/ /src/\n' "$BB" >"$work/floor.Dockerfile"
  sed -n 's/^RUN //p' "$work/ctx/$c/Dockerfile" >"$d.runs"
  for p in $(platforms "$c" | tr , ' '); do
    POLYARCH_ROOT=$work/floor-store "$PA" build --progress quiet --platform "$p" -f "$work/floor.Dockerfile" \
      -o "type=local,dest=$d/pristine/$(tagof "$p")" "$work/ctx/$c" >"$work/log" 2>&1 ||
      { log "floor of $c for $p failed:"; tail -20 "$work/log" >&2; exit 1; }
  done
  fresh "$work/floor-store"; }
floor_one() { # CASE TAG: the case's RUN commands in order, in that platform's tree
  local cmd
  while IFS= read -r cmd; do
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
      chroot "$work/floor/$1/tree/$2" /bin/sh -c "$cmd" >/dev/null || return 1
  done <"$work/floor/$1.runs"; }
floor_run() { # CASE
  local pids=() p rc=0
  for p in $(platforms "$1" | tr , ' '); do floor_one "$1" "$(tagof "$p")" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  return "$rc"; }
run_floor() { # CASE
  local d=$work/floor/$1
  mkdir -p "$d"; floor_prepare "$1"
  rm -rf "$d/tree"; cp -a "$d/pristine" "$d/tree"
  record_load; timed "$1-qe-cold" floor_run "$1"; record_load; }
run_case() { # CASE RUN-NUMBER
  local c=$1 i=$2 a b
  record_load
  # The order of the tools rotates from run to run.
  for tool in $(case $((i % 3)) in 1) echo pa bk bh ;; 2) echo bk bh pa ;; *) echo bh pa bk ;; esac); do
    for phase in cold warm; do
      case $tool in
        pa) [ "$phase" = cold ] && fresh "$work/pa"
            timed "$c-pa-$phase" pa_build "$c" "pa-$c-$i" "$work/pa"
            keep_rss "$c-pa-$phase" "$(maxrss "$work/time.pa")"; check_index "$c" "pa-$c-$i" ;;
        bh) [ "$phase" = cold ] && fresh "$work/bh"
            timed "$c-bh-$phase" bh_build "$c" "bh-$c-$i" "$work/bh"
            a=$(maxrss "$work/time.bh"); b=$(maxrss "$work/time.bh2"); [ "$b" -gt "$a" ] && a=$b
            keep_rss "$c-bh-$phase" "$a"; check_index "$c" "bh-$c-$i" ;;
        bk) [ "$phase" = cold ] && dk_start
            rm -f "$work"/time.bk.* "$work"/bk.*.log; dk_reset_peak
            timed "$c-bk-$phase" bk_build "$c" "bk-$c-$i"
            keep_rss "$c-bk-$phase" "$(dk_peak)"; keep_rss "$c-bkcli-$phase" "$(bk_rss)"
            check_index "$c" "bk-$c-$i" ;;
      esac
    done
    case $tool in pa) fresh "$work/pa" ;; bh) fresh "$work/bh" ;; bk) dk_stop ;; esac
  done
  record_load; }

for i in $(seq 1 "$RUNS"); do
  for c in run multistage cross apt; do
    has "$c" && run_case "$c" "$i" && if floor_case "$c"; then run_floor "$c"; fi
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mib() { awk -v k="$1" 'BEGIN{printf "%.0f", k/1024}'; }
row() { # LABEL KEY-PREFIX PHASE
  [ -n "${T[$2-pa-$3]:-}" ] || return 0
  local p k b; p=$(median <<<"${T[$2-pa-$3]}"); k=$(median <<<"${T[$2-bk-$3]}"); b=$(median <<<"${T[$2-bh-$3]}")
  printf '| %s, %s | %.2f s | %.2f s | %.2f s | %.2f | %.2f | %s | %s (+%s) | %s |\n' "$1" "$3" "$p" "$k" "$b" \
    "$(awk -v a="$p" -v b="$k" 'BEGIN{print a/b}')" "$(awk -v a="$p" -v b="$b" 'BEGIN{print a/b}')" \
    "$(mib "${RSS[$2-pa-$3]}")" "$(mib "${RSS[$2-bk-$3]}")" "$(mib "${RSS[$2-bkcli-$3]}")" "$(mib "${RSS[$2-bh-$3]}")"; }
echo "polyarch $("$PA" --version | awk '{print $2}'), BuildKit in $(dockerd --version | cut -d, -f1), $(buildah --version), $(runc --version | head -1)"
echo "$RUNS runs each, medians; $(nproc) cores; cases: $CASES; load average (1 min) at each case's start and end: $LOADS"
echo
echo "| build | polyarch | BuildKit | buildah | polyarch / BuildKit | polyarch / buildah | polyarch MiB | dockerd MiB (+ client) | buildah MiB |"
echo "|---|---|---|---|---|---|---|---|---|"
for phase in cold warm; do
  row "6-platform RUN" run "$phase"
  row "6-platform multi-stage, 200 files" multistage "$phase"
  row "6-platform cross (BUILDPLATFORM)" cross "$phase"
  row "3-platform Debian apt-get install" apt "$phase"
done
floors=""
for c in run multistage; do [ -n "${T[$c-qe-cold]:-}" ] && floors+="$c "; done
if [ -n "$floors" ]; then
  echo
  echo "The floor: each cold case's RUN commands alone (chroot, all platforms at once, the same QEMU), against the cold builds."
  echo
  echo "| build | RUN commands alone | polyarch | BuildKit | floor / BuildKit | polyarch / floor |"
  echo "|---|---|---|---|---|---|"
  for c in $floors; do
    q=$(median <<<"${T[$c-qe-cold]}"); p=$(median <<<"${T[$c-pa-cold]}"); k=$(median <<<"${T[$c-bk-cold]}")
    case $c in run) label="6-platform RUN" ;; *) label="6-platform multi-stage, 200 files" ;; esac
    printf '| %s, cold | %.2f s | %.2f s | %.2f s | %.2f | %.2f |\n' "$label" "$q" "$p" "$k" \
      "$(awk -v a="$q" -v b="$k" 'BEGIN{print a/b}')" "$(awk -v a="$p" -v b="$q" 'BEGIN{print a/b}')"
  done
fi
