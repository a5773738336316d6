#!/usr/bin/env bash
# A cache that travels: machine A (empty store) builds a 3-platform
# Dockerfile with RUN steps cold, pushes the image and exports its cache
# with `--cache-to type=registry,...,mode=max`; machine B (another empty
# store, nothing pulled) builds the same with `--cache-from` and pushes. B's
# time against A's, medians of RUNS runs, as a Markdown table. The aim: B at
# most a fifth of A.
#
#   bench/cache.sh                             (3 runs)
#   RUNS=1 bench/cache.sh
#   POLYARCH=path/to/polyarch bench/cache.sh   (a prebuilt binary, no cargo build)
#
# Needs: runc, docker-registry, python3, qemu-user-static with binfmt
# handlers for aarch64 and riscv64 (not changed here), ../shared/fixtures, root.
set -euo pipefail
RUNS=${RUNS:-3}
PLATFORMS=${PLATFORMS:-linux/amd64,linux/arm64,linux/riscv64}
here=$(cd "$(dirname "$0")/.." && pwd)
fixtures=${POLYARCH_FIXTURES:-$here/../shared/fixtures}
work=$(mktemp -d /tmp/polyarch-bench-cache.XXXXXX)
PORT=${PORT:-5314}
cleanup() {
  "$fixtures/registry.sh" stop --port "$PORT" --dir "$work/reg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${POLYARCH:-}" ]; then PA=$(realpath "$POLYARCH")
else cargo build --release --quiet --manifest-path "$here/Cargo.toml" -p polyarch; PA="$here/target/release/polyarch"; fi
eval "$("$fixtures/registry.sh" start --port "$PORT" --dir "$work/reg")"
python3 "$fixtures/base-images.py" "$REGISTRY" >/dev/null 2>&1

ctx=$work/ctx
mkdir -p "$ctx/src"
for i in $(seq 1 50); do head -c 4096 /dev/urandom | base64 > "$ctx/src/f$i.txt"; done
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM busybox AS build
COPY src/ /src/
RUN for i in $(seq 1 2000); do echo "$i $(uname -m)" > /tmp/f$i; done; cat /src/* | md5sum > /sum
RUN mkdir /out && for i in $(seq 1 1000); do echo $i > /out/$i; done
FROM busybox
COPY --from=build /out /out
COPY --from=build /sum /sum
RUN ls /out | wc -l > /count && cat /sum >> /count
DOCKERFILE

machine() { # DIR: an empty store and config with docker.io on the fixture
  rm -rf "$1"; mkdir -p "$1/docker" "$1/xdg"
  printf '[registry."docker.io"]\nmirrors = ["%s"]\n' "$REGISTRY" > "$1/polyarch.toml"; }
pa() { # DIR ARGS...: polyarch of that machine
  local m=$1; shift
  env POLYARCH_ROOT="$m/root" DOCKER_CONFIG="$m/docker" XDG_CONFIG_HOME="$m/xdg" POLYARCH_CONFIG="$m/polyarch.toml" \
    SOURCE_DATE_EPOCH=1700000000 "$PA" build --progress plain "$@"; }
timed() { # LOG CMD...: seconds
  local log=$1; shift; local t0 t1
  t0=$(date +%s.%N)
  if ! "$@" >"$log" 2>&1; then echo "bench: failed: $*" >&2; tail -20 "$log" >&2; exit 1; fi
  t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

: > "$work/a"; : > "$work/b"
for r in $(seq 1 "$RUNS"); do
  cache=$REGISTRY/bench/cache:run$r
  machine "$work/A"; machine "$work/B"
  echo "bench: run $r: A cold, --cache-to $cache" >&2
  timed "$work/a.log" pa "$work/A" --platform "$PLATFORMS" --cache-to "type=registry,ref=$cache,mode=max" \
    -o "type=image,name=$REGISTRY/bench/app:a$r,push=true" "$ctx" >> "$work/a"
  echo "bench: run $r: B fresh, --cache-from $cache" >&2
  timed "$work/b.log" pa "$work/B" --platform "$PLATFORMS" --cache-from "type=registry,ref=$cache" \
    -o "type=image,name=$REGISTRY/bench/app:b$r,push=true" "$ctx" >> "$work/b"
  grep -q '^executed 0 step(s)' "$work/b.log" || { echo "bench: B executed steps:" >&2; grep '^executed' "$work/b.log" >&2; exit 1; }
done
a=$(median < "$work/a"); b=$(median < "$work/b")
echo "| build ($PLATFORMS) | time |"
echo "|---|---|"
printf '| A: cold, --cache-to type=registry,mode=max, push | %.3f s |\n' "$a"
printf '| B: fresh store, --cache-from, push | %.3f s |\n' "$b"
printf '| B / A | %.2f |\n' "$(echo "$b / $a" | bc -l)"
