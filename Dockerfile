# logdist: one small image for every role (distributor, analyzer, loadgen, demo).
#   docker build -t logdist .
#   docker run --rm -p 3000:3000 logdist distributor

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so that code changes do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY crates/logdist-core/Cargo.toml crates/logdist-core/Cargo.toml
COPY crates/logdist/Cargo.toml crates/logdist/Cargo.toml
RUN mkdir -p crates/logdist-core/src crates/logdist/src \
 && echo 'fn main() {}' > crates/logdist/src/main.rs \
 && touch crates/logdist-core/src/lib.rs crates/logdist/src/lib.rs \
 && cargo build --release --locked --bin logdist \
 && rm -rf crates/*/src
COPY crates crates
RUN touch crates/logdist-core/src/lib.rs crates/logdist/src/lib.rs crates/logdist/src/main.rs \
 && cargo build --release --locked --bin logdist \
 && strip target/release/logdist

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin logdist
COPY --from=build /src/target/release/logdist /usr/local/bin/logdist
USER 10001:10001
# In a container the network namespace is the boundary: listen on all its interfaces.
ENV LOGDIST_LISTEN=0.0.0.0:3000 \
    LOGDIST_LOG_FORMAT=json
EXPOSE 3000
ENTRYPOINT ["logdist"]
CMD ["distributor"]
