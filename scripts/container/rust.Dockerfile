# Stand-in for rust:1.95-slim-bookworm, built by scripts/container-check.sh where no image
# can be pulled: the local bookworm base, the C toolchain the official image has (gcc,
# libc6-dev: ring and zstd-sys compile C), and this machine's Rust toolchain.
#
# The context (made by the script) holds `toolchain/` (a copy of the machine's 1.95.0
# sysroot, without its docs) and `ca/` (the certificates this machine adds to its trust
# store, if any: where a proxy inspects TLS, cargo must trust it to reach crates.io).
ARG BASE
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
COPY toolchain/ /usr/local/rust/
# The official image's layout, without rustup: cargo and rustc on the PATH.
ENV CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /usr/local/cargo/bin && rustc --version && cargo --version
