#!/usr/bin/env bash
# The Dockerfile and docker-compose.yml, checked for real on a machine where no image can
# be pulled: stand-in base images are built locally, then the real `docker build` and the
# real compose file run with them.
#
#   scripts/container-check.sh [--keep-images]
#
# It:
#   1. bootstraps a minimal Debian bookworm (debootstrap --variant=minbase, from the
#      mirror apt already uses) and imports it as the stand-in for debian:bookworm-slim;
#   2. builds on it the stand-ins for rust:1.95-slim-bookworm (gcc, libc6-dev and this
#      machine's Rust 1.95 toolchain), redis:7 (Debian's redis-server) and
#      nginx:1.27-alpine (Debian's nginx and wget): scripts/container/*.Dockerfile;
#   3. runs the real `docker build` with --build-arg RUST_IMAGE / RUNTIME_IMAGE naming
#      the stand-ins, then checks the image: user 10001, `distributor` as its command,
#      a CA bundle, `logdist --version`;
#   4. builds again from a copy of the sources with one source file changed, and checks
#      that the dependency layer came from the cache; then builds the skeleton stage of a
#      copy whose manifest declares a new [[test]] and [[example]], and checks that cargo
#      reads the skeleton (the failure this layer had: "can't find `delivery` bench");
#   5. `docker compose up` of docker-compose.yml with scripts/container/compose.check.yml
#      (the same services on the local images), host ports on 127.0.0.1 only, chosen free;
#      waits for the load generator (60 s of load) to exit 0;
#   6. checks that the analyzers counted every message the load generator saw acknowledged,
#      and GET /analyzer/stats through the balancer: their total, three analyzers
#      online, shares within SHARE_TOLERANCE of 0.5 / 0.3 / 0.2; and both distributors'
#      healthchecks;
#   7. `docker compose down`, and removes the images it built unless --keep-images.
# Each step is bounded in time; a summary of the steps and their durations ends the run,
# and everything is logged under target/container-check/.
#
# Needs: root (debootstrap, dockerd), a running Docker engine, `docker compose` or
# `docker-compose`, debootstrap, curl, jq, and a rustup toolchain 1.95.0 (the stand-in's
# Rust). The builds fetch crates from crates.io and Debian packages from the mirror, so
# the engine's containers need network (they do where this was written; see README.md).
#
# Environment:
#   CHECK_DIR          work and log directory (default target/container-check)
#   DEBIAN_MIRROR      mirror for debootstrap (default: the first Debian URI of apt's sources)
#   DOCKER             the docker CLI (default: docker on the PATH)
#   RUST_TOOLCHAIN     rustup toolchain copied into the Rust stand-in (default 1.95.0)
#   EXTRA_CA_DIR       certificates added to the Rust stand-in's trust store (default
#                      /usr/local/share/ca-certificates: this machine's own additions)
#   SHARE_TOLERANCE    largest allowed |share - weight share| (default 0.02)
#   BUILD_TIMEOUT      bound of each docker build in seconds (default 2400)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${CHECK_DIR:-$root/target/container-check}
toolchain=${RUST_TOOLCHAIN:-1.95.0}
extra_ca=${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}
tolerance=${SHARE_TOLERANCE:-0.02}
build_timeout=${BUILD_TIMEOUT:-2400}
keep_images=0
[[ ${1:-} == --keep-images ]] && keep_images=1

# The images this script builds, all under one prefix (the override file names them).
base=logdist-check/bookworm-slim:latest
rust=logdist-check/rust:latest
redis=logdist-check/redis:latest
nginx=logdist-check/nginx:latest
image=logdist-check/logdist:latest
images=("$image" "$redis" "$nginx" "$rust" "$base")
project=logdist-check

# DOCKER names the docker CLI to use (default: `docker` on the PATH).
docker_bin=${DOCKER:-docker}
docker() { command "$docker_bin" "$@"; }

mkdir -p "$dir"
summary=()
started_at=$SECONDS

log() { printf '[%s] %s\n' "$(date +%T)" "$*"; }
fail() {
    log "FAILED: $*"
    exit 1
}

# Runs one named step, logs its duration, and records it for the summary.
step() {
    local name=$1
    shift
    local t0=$SECONDS
    log "== $name"
    "$@"
    local took=$((SECONDS - t0))
    summary+=("$(printf '%-52s %5ss' "$name" "$took")")
    log "   $name: ${took}s"
}

# BuildKit, the builder `docker build` uses by default since Docker 23, when the CLI can
# use it: through buildx, or built in (CLIs before 23). Else the legacy builder.
if docker buildx version >/dev/null 2>&1; then
    builder=buildkit
elif client=$(docker version -f '{{.Client.Version}}' 2>/dev/null) && ((${client%%.*} < 23)); then
    builder=buildkit
else
    builder=legacy
fi
if [[ $builder == buildkit ]]; then
    export DOCKER_BUILDKIT=1
    progress=(--progress=plain)
else
    export DOCKER_BUILDKIT=0
    progress=()
fi

# `docker compose` (v2) if the CLI has it, else docker-compose (v1, Debian's package).
if docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose_cmd=(docker-compose)
else
    fail "neither 'docker compose' nor 'docker-compose' is installed"
fi
compose_args=(-p "$project" --project-directory "$root"
    -f "$root/docker-compose.yml" -f "$root/scripts/container/compose.check.yml")
compose() { "${compose_cmd[@]}" "${compose_args[@]}" "$@"; }

# A free TCP port on 127.0.0.1, from the kernel.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stack_up=0
cleanup() {
    local rc=$?
    if ((stack_up)); then
        log "== compose down"
        compose logs --no-color >"$dir/compose.log" 2>&1 || true
        timeout 120 "${compose_cmd[@]}" "${compose_args[@]}" down -v --remove-orphans \
            >"$dir/compose-down.log" 2>&1 || log "compose down failed: see $dir/compose-down.log"
    fi
    rm -rf "$dir/rootfs" "$dir/rust-context" "$dir/copy"
    if ((!keep_images)); then
        docker image rm "${images[@]}" logdist-check/code-change:latest logdist-check/skeleton-probe:latest >/dev/null 2>&1 || true
    fi
    if ((${#summary[@]})); then
        log "== summary ($((SECONDS - started_at))s in all)"
        printf '  %s\n' "${summary[@]}"
    fi
    if ((rc == 0)); then log "PASSED"; else log "exit $rc; logs in $dir"; fi
    exit "$rc"
}
trap cleanup EXIT

# --- 0. What the machine has --------------------------------------------------------
preflight() {
    docker info --format 'engine {{.ServerVersion}}, storage {{.Driver}}, cgroup v{{.CgroupVersion}}' ||
        fail "no Docker engine answers (start dockerd)"
    echo "client $(docker version -f '{{.Client.Version}}'), builder: $builder"
    "${compose_cmd[@]}" version | sed -n 1p
    for tool in debootstrap curl jq python3 rustup; do
        command -v "$tool" >/dev/null || fail "$tool is not installed"
    done
    sysroot=$(rustup run "$toolchain" rustc --print sysroot) ||
        fail "rustup has no toolchain $toolchain (rustup toolchain install $toolchain)"
    rustup run "$toolchain" rustc --version
    if [[ -z ${DEBIAN_MIRROR:-} ]]; then
        # The first Debian archive URI of apt's sources, deb822 or one-line format.
        DEBIAN_MIRROR=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
            /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v '^ *#' |
            grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -1 | tr -d ' ') || true
        DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
    fi
    echo "mirror $DEBIAN_MIRROR"
}

# --- 1. The stand-in for debian:bookworm-slim ----------------------------------------
base_image() {
    rm -rf "$dir/rootfs"
    timeout 900 debootstrap --variant=minbase bookworm "$dir/rootfs" "$DEBIAN_MIRROR" \
        >"$dir/debootstrap.log" 2>&1 || fail "debootstrap: see $dir/debootstrap.log"
    # debian:bookworm-slim has no apt lists, and neither docs nor man pages.
    rm -rf "$dir/rootfs/var/lib/apt/lists/"* "$dir/rootfs/var/cache/apt/"*.bin \
        "$dir/rootfs/usr/share/man/"* "$dir/rootfs/usr/share/info/"*
    find "$dir/rootfs/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
    tar -C "$dir/rootfs" -c . | docker import --change 'CMD ["bash"]' - "$base" >/dev/null
    rm -rf "$dir/rootfs"
    docker run --rm "$base" cat /etc/debian_version
}

# --- 2. The stand-ins for rust:1.95-slim-bookworm, redis:7, nginx:1.27-alpine --------
standins() {
    local ctx=$dir/rust-context
    rm -rf "$ctx"
    mkdir -p "$ctx/toolchain" "$ctx/ca"
    tar -C "$sysroot" --exclude=./share/doc -cf - . | tar -C "$ctx/toolchain" -xf -
    if compgen -G "$extra_ca/*.crt" >/dev/null; then
        cp "$extra_ca"/*.crt "$ctx/ca/"
    fi
    timeout "$build_timeout" "$docker_bin" build -q -f "$root/scripts/container/rust.Dockerfile" \
        --build-arg BASE="$base" -t "$rust" "$ctx" >"$dir/standin-rust.log" 2>&1 ||
        fail "rust stand-in: see $dir/standin-rust.log"
    rm -rf "$ctx"
    mkdir -p "$dir/empty"
    local name
    for name in redis nginx; do
        local tag=logdist-check/$name:latest
        timeout 900 "$docker_bin" build -q -f "$root/scripts/container/$name.Dockerfile" \
            --build-arg BASE="$base" -t "$tag" "$dir/empty" >"$dir/standin-$name.log" 2>&1 ||
            fail "$name stand-in: see $dir/standin-$name.log"
    done
    docker run --rm "$rust" sh -c 'rustc --version && cargo --version && cc --version | head -1'
}

# docker build of the real Dockerfile on the stand-ins; CONTEXT, LOG, then extra flags.
real_build() {
    local context=$1 out=$2
    shift 2
    timeout "$build_timeout" "$docker_bin" build "${progress[@]}" \
        --build-arg RUST_IMAGE="$rust" --build-arg RUNTIME_IMAGE="$base" \
        -f "$context/Dockerfile" "$@" "$context" >"$out" 2>&1 ||
        fail "docker build: see $out"
}

# --- 3. The real docker build, and what the image must be -----------------------------
build_image() {
    real_build "$root" "$dir/build.log" -t "$image"
    grep -E 'Finished .release' "$dir/build.log" | sed 's/^/   /'
    local user cmd
    user=$(docker image inspect -f '{{.Config.User}}' "$image")
    cmd=$(docker image inspect -f '{{json .Config.Entrypoint}} {{json .Config.Cmd}}' "$image")
    [[ $user == 10001:10001 ]] || fail "image user is '$user', not 10001:10001"
    [[ $cmd == '["logdist"] ["distributor"]' ]] || fail "image command is $cmd"
    docker run --rm --entrypoint bash "$image" -c \
        'id -u && test -s /etc/ssl/certs/ca-certificates.crt && echo "CA bundle: $(grep -c "BEGIN CERT" /etc/ssl/certs/ca-certificates.crt) certificates" && logdist --version' ||
        fail "the image lacks its user, its CA bundle or its binary"
    docker image ls "$image" --format 'image size {{.Size}}'
}

# A copy of the build context (what .dockerignore lets through, roughly) to change.
context_copy() {
    rm -rf "$dir/copy"
    mkdir -p "$dir/copy"
    tar -C "$root" --exclude=./target --exclude=./.git --exclude='./fuzz/target' -cf - . |
        tar -C "$dir/copy" -xf -
}

# --- 4. The dependency layer: cached across a code change, robust to new targets -------
cache_check() {
    context_copy
    printf '\n// container-check: a code change.\n' >>"$dir/copy/crates/logdist/src/main.rs"
    real_build "$dir/copy" "$dir/build-code-change.log" -t logdist-check/code-change:latest
    # The dependency step is the RUN that is only `cargo build`. BuildKit marks a reused
    # step "#N CACHED"; the legacy builder prints "Using cache" on the next line.
    local log=$dir/build-code-change.log n
    n=$(grep -E '^#[0-9]+ \[build [0-9]+/[0-9]+\] RUN cargo build --release --locked --bin logdist$' \
        "$log" | head -1 | cut -d' ' -f1) || true
    if [[ -n $n ]]; then
        grep -qx "$n CACHED" "$log"
    else
        grep -E 'RUN cargo build --release --locked --bin logdist$' -A1 "$log" | grep -q 'Using cache'
    fi || fail "the dependency layer was rebuilt after a code change: see $log"
    echo "   dependency layer: CACHED after a code change"
    grep -E 'Compiling|Finished' "$dir/build-code-change.log" | sed 's/^#[0-9]* [0-9.]* */   /'

    context_copy
    cat >>"$dir/copy/crates/logdist/Cargo.toml" <<'EOF'

[[test]]
name = "container_check_new_test"
harness = false

[[example]]
name = "container_check_new_example"
EOF
    mkdir -p "$dir/copy/crates/logdist/examples"
    echo 'fn main() {}' >"$dir/copy/crates/logdist/tests/container_check_new_test.rs"
    echo 'fn main() {}' >"$dir/copy/crates/logdist/examples/container_check_new_example.rs"
    real_build "$dir/copy" "$dir/build-new-targets.log" --target skeleton \
        -t logdist-check/skeleton-probe:latest
    docker run --rm logdist-check/skeleton-probe:latest sh -c \
        'cd /skeleton && ls crates/logdist/examples crates/logdist/tests/container_check_new_test.rs &&
         cargo metadata --no-deps --offline --format-version 1 | grep -o "\"name\":\"container_check_new_[a-z]*\"" | sort -u' ||
        fail "cargo cannot read the skeleton of a workspace with new targets"
    rm -rf "$dir/copy"
}

# --- 5. The compose stack, until the load generator is done ----------------------------
stack() {
    export LOGDIST_LB_PORT LOGDIST_ANALYZER_1_PORT LOGDIST_ANALYZER_2_PORT LOGDIST_ANALYZER_3_PORT
    local ports=()
    while ((${#ports[@]} < 4)); do
        local port
        port=$(free_port)
        [[ " ${ports[*]} " == *" $port "* ]] || ports+=("$port")
    done
    LOGDIST_LB_PORT=${ports[0]}
    LOGDIST_ANALYZER_1_PORT=${ports[1]}
    LOGDIST_ANALYZER_2_PORT=${ports[2]}
    LOGDIST_ANALYZER_3_PORT=${ports[3]}
    echo "   balancer on 127.0.0.1:$LOGDIST_LB_PORT"
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    stack_up=1
    # `up -d` returns once every container is started, each after its dependencies are
    # healthy; the load generator is last.
    timeout 300 "${compose_cmd[@]}" "${compose_args[@]}" up -d --no-build \
        >"$dir/compose-up.log" 2>&1 || {
        cat "$dir/compose-up.log"
        fail "compose up: see $dir/compose-up.log"
    }
    compose ps
    local loadgen state deadline=$((SECONDS + 240))
    loadgen=$(compose ps -q loadgen)
    [[ -n $loadgen ]] || fail "no loadgen container"
    while :; do
        state=$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$loadgen")
        [[ $state == exited* ]] && break
        ((SECONDS < deadline)) || fail "the load generator still runs after 240 s"
        sleep 5
    done
    docker logs "$loadgen" >"$dir/loadgen.log" 2>&1
    sed 's/^/   loadgen | /' "$dir/loadgen.log" | tail -40
    [[ $state == "exited 0" ]] || fail "the load generator ended with: $state"
}

# --- 6. What the fleet shows through the balancer --------------------------------------
fleet_check() {
    local url=http://127.0.0.1:$LOGDIST_LB_PORT
    # The messages the load generator saw acknowledged, from its summary's "acked" line.
    local acked
    acked=$(awk '$1 == "acked" { gsub(",", "", $3); print $3 }' "$dir/loadgen.log")
    [[ $acked =~ ^[0-9]+$ ]] || fail "no 'acked' line in the load generator's summary"
    # What the analyzers counted themselves, on their published ports.
    local counted=0 port n
    for port in "$LOGDIST_ANALYZER_1_PORT" "$LOGDIST_ANALYZER_2_PORT" "$LOGDIST_ANALYZER_3_PORT"; do
        n=$(curl -fsS --max-time 10 "http://127.0.0.1:$port/stats" | jq '.messages') ||
            fail "GET /stats of the analyzer on port $port"
        counted=$((counted + n))
    done
    echo "   messages acked by the load generator: $acked; counted by the analyzers: $counted"
    # More only if a resend (--retries) repeated a packet that had been delivered.
    ((counted >= acked)) || fail "the analyzers counted $counted messages, fewer than the $acked acked"
    # The fleet's totals come from both distributors through Redis, flushed periodically:
    # wait (up to 30 s) until they add up to what the analyzers counted.
    local deadline=$((SECONDS + 30)) total
    while :; do
        curl -fsS --max-time 10 "$url/analyzer/stats" >"$dir/stats.json" || fail "GET /analyzer/stats"
        total=$(jq '[.[].messages_total] | add' "$dir/stats.json")
        ((total == counted)) && break
        ((SECONDS < deadline)) || fail "/analyzer/stats totals $total messages, not $counted, after 30 s"
        sleep 2
    done
    jq -r '.[] | "   \(.id)  \(.state)  weight \(.weight)  target \(.target_share)  share \(.share)  messages_total \(.messages_total)  \(.fleet_states // {} | tostring)"' \
        "$dir/stats.json"
    # The weights sum to 1, so each target share is its weight.
    jq -e --argjson tol "$tolerance" '
        length == 3
        and (map(select(.state == "online")) | length) == 3
        and (map(.weight) | sort) == [0.2, 0.3, 0.5]
        and all(.[]; (.target_share - .weight | fabs) < 1e-9)
        and all(.[]; (.share - .target_share | fabs) <= $tol)' "$dir/stats.json" >/dev/null ||
        fail "three analyzers online with shares within $tolerance of 0.5/0.3/0.2 (see $dir/stats.json)"
    echo "   three analyzers online, each share within $tolerance of its weight"
    local name
    for name in distributor-1 distributor-2; do
        compose exec -T "$name" logdist-health 3000 || fail "$name is not healthy"
        echo "   $name: $(docker inspect -f '{{.State.Health.Status}}' "$(compose ps -q "$name")")"
    done
}

step "preflight" preflight
step "1. stand-in debian:bookworm-slim (debootstrap, import)" base_image
step "2. stand-ins rust, redis, nginx" standins
step "3. docker build (real Dockerfile)" build_image
step "4. rebuild after a code change; new targets" cache_check
step "5. compose up, load generator 60 s" stack
step "6. /analyzer/stats through the balancer" fleet_check
