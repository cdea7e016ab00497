# syntax=docker/dockerfile:1
#
# egress-guard image: a release build on Debian bookworm, run from distroless (glibc,
# libgcc, CA certificates; no shell, no package manager) as uid/gid 65532.
#
#   docker build -t egress-guard:0.2.0 .
#
# The tag is Cargo.toml's version, as are the label below and the image in deploy/
# (tests/deploy_args.rs checks that they agree). To run it in a cluster, tag it for your
# registry, push it and point an overlay's `images:` at it (deploy/overlays/registry,
# docs/deploy.md "The image").
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts below.

FROM rust:1-bookworm AS build
WORKDIR /src

# Strip symbols from the shipped binary without touching Cargo.toml's profile.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols

# Fetch dependencies in their own layer, keyed on the manifest and lockfile only. The
# empty stand-ins let cargo load the manifest, which names these targets.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches bench && touch src/lib.rs src/main.rs benches/engine.rs \
    bench/bare_server.rs bench/gen_allowlist.rs bench/engine_profile.rs
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    cargo fetch --locked

# benches/ and bench/ are needed because Cargo.toml declares bench and example targets, which cargo
# resolves even for `cargo build`; examples/allowlist.yaml is embedded in the binary.
COPY src ./src
COPY benches ./benches
COPY bench ./bench
COPY examples ./examples
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin egress-guard \
    && install -D -m 0755 target/release/egress-guard /out/egress-guard

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="egress-guard" \
      org.opencontainers.image.version="0.2.0" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/egress-guard /usr/local/bin/egress-guard
# Return freed memory promptly (see deploy/base/deployment.yaml).
ENV _RJEM_MALLOC_CONF=background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0
USER 65532:65532
# 8443: admission webhook (HTTPS); 9090: /metrics, /healthz, /readyz (HTTP).
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/egress-guard", "serve"]
