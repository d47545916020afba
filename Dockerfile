# NOVA's container image: `nova serve` on 0.0.0.0:8080, its data in the volume /var/lib/nova.
#
#   docker build -t nova .                                   # builds NOVA in the `build` stage, then `runtime`
#   cargo build --release -p nova && \
#   docker build --target runtime-prebuilt -t nova .         # the same runtime, with the binary built on the host
#
# `scripts/image` does the second with podman on machines that reach no image registry (it bootstraps
# debian:bookworm-slim from Debian's packages first). Both final stages are `runtime-base` plus the binary: the
# packages, user, volume and settings are the same whichever built it. Running it, and the flags the sandbox
# needs: deploy/container/README.md.

# --- build: the release binary -------------------------------------------------------------------------------
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p nova \
    && install -m 0755 target/release/nova /usr/local/bin/nova

# --- runtime-base: what NOVA runs with, without NOVA --------------------------------------------------------
FROM debian:bookworm-slim AS runtime-base
ARG DEBIAN_FRONTEND=noninteractive
# tesseract and its languages: OCR of scans; poppler-utils: pdftoppm for pages with no readable text;
# python3: the sandbox's interpreter; slirp4netns: sandbox runs with network access; ca-certificates: HTTPS to
# S3, the model's API and webhooks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates \
        poppler-utils \
        python3 \
        slirp4netns \
        tesseract-ocr \
        tesseract-ocr-eng tesseract-ocr-deu tesseract-ocr-fra tesseract-ocr-spa \
        tesseract-ocr-nld tesseract-ocr-ita tesseract-ocr-pol \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /var/cache/debconf/*-old \
        /var/log/apt/* /var/log/dpkg.log
# The unprivileged user for API-only containers (`--user nova`; uid 10001 as deploy/kubernetes runs the API).
# The image's default user stays root: the sandbox must create its jails' cgroups (see the README), and the
# deploy recipes run the worker as root and mount host or task volumes owned by root.
RUN groupadd --system --gid 10001 nova \
    && useradd --system --uid 10001 --gid nova --home-dir /var/lib/nova --no-create-home \
        --shell /usr/sbin/nologin nova \
    && install -d -o nova -g nova -m 0750 /var/lib/nova
ENV NOVA_DATA_DIR=/var/lib/nova \
    NOVA_LISTEN=0.0.0.0:8080
VOLUME /var/lib/nova
EXPOSE 8080
# No curl or wget in the image: python3 (there for the sandbox) asks /healthz on the port of NOVA_LISTEN.
# Kept by `docker build` and by `podman build --format docker` (the OCI format has no health checks).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; port = os.environ.get('NOVA_LISTEN', '0.0.0.0:8080').rsplit(':', 1)[1]; urllib.request.urlopen('http://127.0.0.1:' + port + '/healthz', timeout=4)"]
# SIGTERM (the default stop signal) stops NOVA gracefully: running jobs get NOVA_SHUTDOWN_GRACE (30 s) to
# finish, so give `docker stop` / `podman stop` more than that (`--stop-timeout 45`, `-t 45`).
ENTRYPOINT ["nova"]
CMD ["serve"]

# --- runtime-prebuilt: runtime-base with a binary built on the host (glibc of Debian 12 or older) ----------
FROM runtime-base AS runtime-prebuilt
ARG NOVA_BINARY=target/release/nova
COPY ${NOVA_BINARY} /usr/local/bin/nova

# --- runtime (the default target): runtime-base with the binary of the build stage -------------------------
FROM runtime-base AS runtime
COPY --from=build /usr/local/bin/nova /usr/local/bin/nova
