#!/usr/bin/env bash
# polyarch quickstart, as root on a fresh Debian 12 machine (no sudo needed),
# with no Docker Hub and no Docker engine:
#   1. installs what polyarch needs (scripts/install-deps.sh) and builds it;
#   2. downloads Debian's busybox-static for six architectures (a private apt
#      configuration: the host's dpkg architectures are not touched) and
#      makes a root filesystem of each;
#   3. builds them into one multi-arch busybox base image with `polyarch
#      build --platform ... --push` (FROM scratch), pushed to a registry it
#      starts on loopback (and stops when it ends);
#   4. registers QEMU's emulators with `polyarch binfmt install --reset all`
#      (replacing handlers that would lose argv[0]);
#   5. builds a Dockerfile with a RUN step on that base for all six
#      platforms (foreign ones under QEMU) into the local store;
#   6. lists the store with `polyarch images` and runs each platform's image
#      with `polyarch run` (its `uname -m` and what the RUN step wrote).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${POLYARCH_QUICKSTART_DIR:-/tmp/polyarch-quickstart}
PLATFORMS=(amd64:linux/amd64 arm64:linux/arm64 armhf:linux/arm/v7 ppc64el:linux/ppc64le s390x:linux/s390x i386:linux/386)

bash "$here/scripts/install-deps.sh"
echo "== building polyarch"
cargo build --release --quiet --manifest-path "$here/Cargo.toml" -p polyarch
PA=$here/target/release/polyarch
mkdir -p "$work"
export POLYARCH_ROOT=$work/store

echo "== downloading busybox-static for ${#PLATFORMS[@]} architectures"
mirror=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -1)}
mirror=${mirror:-$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)}
mirror=${mirror:-http://deb.debian.org/debian}
apt=$work/apt
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/sources.list.d" "$work/debs"
touch "$apt/status"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main" > "$apt/sources.list"
arches=$(printf '%s\n' "${PLATFORMS[@]}" | cut -d: -f1 | paste -sd,)
APT=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/sources.list.d"
     -o "Dir::State::Lists=$apt/lists" -o "Dir::State::Status=$apt/status" -o "Dir::Cache=$apt/cache"
     -o "APT::Architectures=$arches" -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1")
for i in 1 2 3; do
  apt-get -q "${APT[@]}" update >/dev/null && break
  echo "apt-get update failed (try $i); retrying" >&2; sleep 5
done
(cd "$work/debs" && apt-get -q "${APT[@]}" download $(printf 'busybox-static:%s ' $(tr , ' ' <<<"$arches")) >/dev/null)

# The applets of the host's busybox: every architecture's build has the same list.
host_deb=$(ls "$work/debs"/busybox-static_*_amd64.deb | head -1)
rm -rf "$work/host" && dpkg-deb -x "$host_deb" "$work/host"
applets=$("$work/host/bin/busybox" --list)

# A registry on loopback (Debian's docker-registry) to hold the base image.
port=${POLYARCH_QUICKSTART_PORT:-5055}
mkdir -p "$work/registry"
cat > "$work/registry/config.yml" <<YAML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry/data}}
http: {addr: 127.0.0.1:$port, secret: quickstart}
YAML
if ! curl -s -o /dev/null "http://127.0.0.1:$port/v2/"; then
  setsid docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 </dev/null &
  echo $! > "$work/registry/pid"
  # Stop the registry this script started when it ends (its data stays in $work/registry).
  trap 'kill "$(cat "$work/registry/pid")" 2>/dev/null || true' EXIT
  for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$port/v2/" && break; sleep 0.1; done
fi
REG=127.0.0.1:$port

# One context with a root filesystem per platform; TARGETARCH/TARGETVARIANT pick it.
ctx=$work/base
rm -rf "$ctx" && mkdir -p "$ctx"
platforms=()
for entry in "${PLATFORMS[@]}"; do
  arch=${entry%%:*} platform=${entry#*:}
  platforms+=("$platform")
  p=${platform#linux/}; dir=$ctx/rootfs/${p//\//}
  mkdir -p "$dir"
  dpkg-deb -x "$(ls "$work/debs"/busybox-static_*_"$arch".deb | head -1)" "$dir"
  for a in $applets; do [ -e "$dir/bin/$a" ] || ln -s busybox "$dir/bin/$a"; done
  mkdir -p "$dir/etc" "$dir/tmp" "$dir/root"
  chmod 1777 "$dir/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$dir/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$dir/etc/group"
done
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
ARG TARGETARCH
ARG TARGETVARIANT
COPY rootfs/${TARGETARCH}${TARGETVARIANT}/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["sh"]
DOCKERFILE
list=$(IFS=,; echo "${platforms[*]}")
echo "== the multi-arch base image: polyarch build --platform $list --push"
"$PA" build --progress plain --platform "$list" -t "$REG/quickstart/busybox:latest" --push "$ctx"

echo "== the main job: a multi-platform build with RUN steps (foreign ones under QEMU), into the local store"
"$PA" binfmt install --reset all || true
app=$work/app
mkdir -p "$app"
cat > "$app/Dockerfile" <<DOCKERFILE
FROM $REG/quickstart/busybox:latest
ARG TARGETPLATFORM
RUN echo "built for \$TARGETPLATFORM on \$(uname -m)" > /built.txt
CMD ["cat", "/built.txt"]
DOCKERFILE
"$PA" build --progress plain --platform "$list" -t quickstart/hello:latest "$app"

echo "== the local store"
"$PA" images
echo "== each platform's image, run with polyarch run"
for platform in "${platforms[@]}"; do
  printf '%-16s uname -m: %-8s %s\n' "$platform" \
    "$("$PA" run --rm --platform "$platform" quickstart/hello:latest uname -m)" \
    "$("$PA" run --rm --platform "$platform" quickstart/hello:latest)"
done
