# logdist: one small image for every role (distributor, analyzer, loadgen, demo).
#   docker build -t logdist .
#   docker run --rm -p 127.0.0.1:3000:3000 logdist distributor
#
# The base images can be replaced (a mirror, a local stand-in; scripts/container-check.sh
# uses this): --build-arg RUST_IMAGE=... --build-arg RUNTIME_IMAGE=...
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# The workspace's skeleton: manifests, lock file, and a stub for every target they declare
# (deploy/cargo-skeleton.sh). It changes only when a manifest does, so the next stage's
# dependency layer survives code changes and new targets alike.
FROM ${RUST_IMAGE} AS skeleton
WORKDIR /src
COPY . .
RUN sh deploy/cargo-skeleton.sh /src /skeleton

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Dependencies first, built on the stubs, so that code changes do not rebuild them.
COPY --from=skeleton /skeleton ./
RUN cargo build --release --locked --bin logdist
# Then the real sources. Their modification times may be older than the stubs' build, so
# they are touched: cargo then rebuilds the workspace's crates, and only those.
COPY crates crates
RUN find crates -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --bin logdist \
 && strip target/release/logdist

FROM ${RUNTIME_IMAGE}
# The healthcheck of docker-compose.yml: `logdist-health PORT` asks GET /health with bash
# alone (the image has no curl).
COPY deploy/logdist-health.sh /usr/local/bin/logdist-health
# ca-certificates: `https://` analyzers are verified against the system's roots
# (rustls-native-certs reads /etc/ssl/certs); without it no certificate can be verified.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && chmod 0755 /usr/local/bin/logdist-health \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin logdist
COPY --from=build /src/target/release/logdist /usr/local/bin/logdist
USER 10001:10001
# In a container the network namespace is the boundary: listen on all its interfaces.
ENV LOGDIST_LISTEN=0.0.0.0:3000 \
    LOGDIST_LOG_FORMAT=json
EXPOSE 3000
ENTRYPOINT ["logdist"]
CMD ["distributor"]
