#!/usr/bin/env bash
# Times index assembly with polyarch and with its peers on the same work, in
# one run, and prints a Markdown table of medians and ratios.
#
#   bench/manifest.sh [RUNS]      (default 5 runs of each)
#   POLYARCH=path/to/polyarch bench/manifest.sh   (a prebuilt binary, no cargo build)
#
# 1. 7-platform `manifest create` + `annotate` + `push`: polyarch vs `docker manifest`.
# 2. Copying the 9-platform busybox index to a new repository of the same
#    registry: `polyarch imagetools create` vs `skopeo copy --all`.
# 3. The same copy to a second registry (every blob streamed across).
# Needs: docker-registry, skopeo, the docker client, python3, ../shared/fixtures.
set -euo pipefail
RUNS=${1:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
fixtures=${POLYARCH_FIXTURES:-$here/../shared/fixtures}
work=$(mktemp -d /tmp/polyarch-bench.XXXXXX)
trap '"$fixtures/registry.sh" stop --port 5301 --dir "$work/reg1" >/dev/null 2>&1 || true;
      "$fixtures/registry.sh" stop --port 5302 --dir "$work/reg2" >/dev/null 2>&1 || true;
      rm -rf "$work"' EXIT

if [ -n "${POLYARCH:-}" ]; then PA=$(realpath "$POLYARCH")   # a prebuilt binary
else cargo build --release --quiet --manifest-path "$here/Cargo.toml" -p polyarch; PA="$here/target/release/polyarch"; fi
eval "$("$fixtures/registry.sh" start --port 5301 --dir "$work/reg1")"
R1=$REGISTRY
eval "$("$fixtures/registry.sh" start --port 5302 --dir "$work/reg2")"
R2=$REGISTRY
python3 "$fixtures/base-images.py" "$R1" >/dev/null 2>&1

export DOCKER_CONFIG=$work/docker POLYARCH_ROOT=$work/polyarch
mkdir -p "$DOCKER_CONFIG"
ARCHS=(amd64 arm64 armv7 armv5 386 ppc64le s390x)
declare -A OSARCH=([amd64]="amd64" [arm64]="arm64 v8" [armv7]="arm v7" [armv5]="arm v5" [386]="386" [ppc64le]="ppc64le" [s390x]="s390x")

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

assemble() { # tool run
  local tool=$1 i=$2 list="$R1/bench/$1-list:v$2" imgs=()
  for a in "${ARCHS[@]}"; do imgs+=("$R1/library/busybox:latest-$a"); done
  if [ "$tool" = polyarch ]; then
    "$PA" manifest create "$list" "${imgs[@]}" >/dev/null
    for a in "${ARCHS[@]}"; do
      set -- ${OSARCH[$a]}
      "$PA" manifest annotate --os linux --arch "$1" ${2:+--variant "$2"} "$list" "$R1/library/busybox:latest-$a"
    done
    "$PA" manifest push --purge "$list" >/dev/null
  else
    docker manifest create --insecure "$list" "${imgs[@]}" >/dev/null
    for a in "${ARCHS[@]}"; do
      set -- ${OSARCH[$a]}
      docker manifest annotate --os linux --arch "$1" ${2:+--variant "$2"} "$list" "$R1/library/busybox:latest-$a"
    done
    docker manifest push --insecure --purge "$list" >/dev/null
  fi
}

copy() { # tool run registry
  local tool=$1 i=$2 reg=$3 dst="$3/bench/copy-$1-$2:latest"
  if [ "$tool" = polyarch ]; then
    "$PA" imagetools create -t "$dst" "$R1/library/busybox:latest" >/dev/null 2>&1
  else
    skopeo copy --all --quiet --src-tls-verify=false --dest-tls-verify=false \
      "docker://$R1/library/busybox:latest" "docker://$dst" >/dev/null
  fi
}

declare -A T
measure() { # key command...
  local key=$1; shift
  local t0 t1
  t0=$(now); "$@"; t1=$(now)
  T[$key]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}') "
}

for i in $(seq 1 "$RUNS"); do
  measure assemble-polyarch assemble polyarch "$i"
  measure assemble-docker assemble docker "$i"
  measure copy-polyarch copy polyarch "$i" "$R1"
  measure copy-skopeo copy skopeo "$i" "$R1"
  measure xcopy-polyarch copy polyarch "x$i" "$R2"
  measure xcopy-skopeo copy skopeo "x$i" "$R2"
done

med() { tr ' ' '\n' <<<"${T[$1]}" | grep -v '^$' | median; }
row() { # label polyarch-key peer-key peer-name
  local p q
  p=$(med "$2"); q=$(med "$3")
  printf '| %s | %.3f s | %s %.3f s | %.2f |\n' "$1" "$p" "$4" "$q" "$(awk -v a="$p" -v b="$q" 'BEGIN{print a/b}')"
}
echo "polyarch $("$PA" --version | awk '{print $2}'), $(docker --version | cut -d, -f1), $(skopeo --version); $RUNS runs each, medians; $(nproc) cores"
echo
echo "| work | polyarch | peer | polyarch / peer |"
echo "|---|---|---|---|"
row "7-platform manifest create + annotate + push" assemble-polyarch assemble-docker "docker manifest"
row "copy 9-platform index, same registry" copy-polyarch copy-skopeo "skopeo copy --all"
row "copy 9-platform index, to another registry" xcopy-polyarch xcopy-skopeo "skopeo copy --all"
