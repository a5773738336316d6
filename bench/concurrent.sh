#!/usr/bin/env bash
# Per-platform builds at once on one store, as BuildKit users start theirs
# (one `docker build --platform P` per platform, all at once, then
# `docker manifest`): six `polyarch build --platform P --push` processes
# started together on one empty store, against one `polyarch build
# --platform LIST --push` on another empty store. The Dockerfile's build
# stage is `FROM --platform=$BUILDPLATFORM` with a RUN that is the same for
# every target (shared) and one that uses TARGETPLATFORM; the processes
# should run the shared RUN once between them (one waits for the other's
# record). Prints medians of RUNS cold runs of each, the ratio, and how
# many times the shared RUN executed, as a Markdown table.
#
#   bench/concurrent.sh                             (3 runs)
#   RUNS=1 bench/concurrent.sh
#   POLYARCH=path/to/polyarch bench/concurrent.sh   (a prebuilt binary, no cargo build)
#
# Needs: root, runc, docker-registry, python3, ../shared/fixtures. No
# emulation: every RUN runs on this machine (BUILDPLATFORM).
set -euo pipefail
RUNS=${RUNS:-3}
PLATFORMS=${PLATFORMS:-linux/amd64 linux/arm64 linux/arm/v7 linux/ppc64le linux/s390x linux/386}
here=$(cd "$(dirname "$0")/.." && pwd)
fixtures=${POLYARCH_FIXTURES:-$here/../shared/fixtures}
work=$(mktemp -d /tmp/polyarch-bench-concurrent.XXXXXX)
PORT=${PORT:-5317}
cleanup() {
  "$fixtures/registry.sh" stop --port "$PORT" --dir "$work/reg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${POLYARCH:-}" ]; then PA=$(realpath "$POLYARCH")
else cargo build --release --quiet --manifest-path "$here/Cargo.toml" -p polyarch; PA="$here/target/release/polyarch"; fi
eval "$("$fixtures/registry.sh" start --port "$PORT" --dir "$work/reg")"
python3 "$fixtures/base-images.py" "$REGISTRY" >/dev/null 2>&1
printf '[registry."docker.io"]\nmirrors = ["%s"]\n[registry."%s"]\nhttp = true\n' "$REGISTRY" "$REGISTRY" > "$work/polyarch.toml"

ctx=$work/ctx
mkdir -p "$ctx"
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM --platform=$BUILDPLATFORM busybox AS build
RUN mkdir -p /gen && for i in $(seq 1 3000); do echo "shared $i" > /gen/f$i; done && tar -cf /gen.tar /gen
ARG TARGETPLATFORM
RUN mkdir -p /out && for i in $(seq 1 3000); do echo "$TARGETPLATFORM $i" > /out/f$i; done && tar -cf /out.tar /out

FROM busybox
COPY --from=build /out.tar /gen.tar /
CMD ["sh"]
DOCKERFILE

pa() { # ROOT ARGS...
  local root=$1; shift
  env POLYARCH_ROOT="$root" POLYARCH_CONFIG="$work/polyarch.toml" XDG_CONFIG_HOME="$work/xdg" "$PA" "$@"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
shared_runs() { # LOG...: how many of the logs executed the shared RUN (not CACHED)
  local n=0 f
  for f in "$@"; do
    if awk '/RUN mkdir -p \/gen/ {id=$1} id && $1 == id && /CACHED/ {cached=1} END {exit !(id && !cached)}' "$f"; then
      n=$((n + 1)); fi
  done
  echo "$n"; }

: > "$work/each"; : > "$work/one"; : > "$work/shared"
for r in $(seq 1 "$RUNS"); do
  echo "bench: run $r: one process per platform, at once" >&2
  rm -rf "$work/s1"; t0=$(date +%s.%N); pids=(); logs=()
  for p in $PLATFORMS; do
    log=$work/each-$r-${p//\//-}.log; logs+=("$log")
    pa "$work/s1" build --progress plain --platform "$p" --push -t "$REGISTRY/bench/each:$r-${p//\//-}" "$ctx" >"$log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || { echo "bench: a per-platform build failed" >&2; tail -20 "${logs[@]}" >&2; exit 1; }; done
  t1=$(date +%s.%N); echo "$t1 - $t0" | bc >> "$work/each"
  shared_runs "${logs[@]}" >> "$work/shared"
  echo "bench: run $r: one multi-platform build" >&2
  rm -rf "$work/s2"; t0=$(date +%s.%N)
  pa "$work/s2" build --progress plain --platform "${PLATFORMS// /,}" --push -t "$REGISTRY/bench/one:$r" "$ctx" >"$work/one.log" 2>&1 \
    || { tail -20 "$work/one.log" >&2; exit 1; }
  t1=$(date +%s.%N); echo "$t1 - $t0" | bc >> "$work/one"
done
each=$(median < "$work/each"); one=$(median < "$work/one")
echo "| 6-platform cross build, cold, pushed | time |"
echo "|---|---|"
printf '| one polyarch process per platform, all at once, one store | %.2f s |\n' "$each"
printf '| one multi-platform polyarch build | %.2f s |\n' "$one"
printf '| per-platform / multi-platform | %.2f |\n' "$(echo "$each / $one" | bc -l)"
printf '| runs of the shared RUN among the per-platform processes (per run) | %s |\n' "$(paste -sd, "$work/shared")"
