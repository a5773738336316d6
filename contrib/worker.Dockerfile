# A multi-platform worker image for docker-container nodes
# (docs/worker-image.md). The polyarch binaries come from the build
# context `bin`: a directory with polyarch-amd64, polyarch-arm64, ... (one
# per TARGETARCH), e.g. from `cargo build --release --target ...`.
#
#   polyarch build -f contrib/worker.Dockerfile --build-context bin=dist \
#       --platform linux/amd64,linux/arm64 -t registry.example/polyarch-worker:1 --push contrib

FROM debian:bookworm-slim
ARG TARGETARCH
# runc runs the RUN steps; the CA certificates verify registries; QEMU runs
# foreign steps where the engine's host has no F-flag binfmt handlers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends runc ca-certificates qemu-user-static \
 && rm -rf /var/lib/apt/lists/*
COPY --from=bin --chmod=0755 polyarch-${TARGETARCH} /usr/local/bin/polyarch
VOLUME /var/lib/polyarch
ENTRYPOINT ["polyarch", "worker", "--idle"]
