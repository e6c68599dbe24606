#!/usr/bin/env bash
# Property-based API tests of the distributor against openapi.yaml, with Schemathesis.
#
#   scripts/schemathesis.sh [extra `st run` arguments...]
#
# It:
#   1. creates (once) a Python venv under target/schemathesis-venv with pinned Schemathesis;
#   2. builds logdist (debug), unless LOGDIST_BIN names a binary to test;
#   3. in a private network namespace with only the loopback interface (when it can make
#      one: root or user namespaces), starts two analyzers and a distributor with --token
#      on free loopback ports, and waits for /health;
#   4. runs every Schemathesis check with positive and negative (fuzzed) data over the
#      examples, coverage, fuzzing and stateful phases, bounded per operation and in time;
#   5. writes target/schemathesis/{output.txt,junit.xml} and the processes' logs;
#      (scripts/schemathesis.toml holds the few settings the command line cannot give);
#   6. stops exactly the processes it started, and exits non-zero if Schemathesis found
#      a failure (or ran out of time).
#
# Environment:
#   LOGDIST_BIN        logdist binary to test (default: build target/debug/logdist)
#   ST_VENV            venv directory (default: target/schemathesis-venv)
#   ST_MAX_EXAMPLES    test cases per operation and phase (default 100)
#   ST_TIMEOUT         wall-clock bound of the Schemathesis run in seconds (default 900)
#   ST_WORKERS         concurrent workers (default 2)
#   ST_SEED            seed, to replay a run
#   ST_PHASES          phases (default examples,coverage,fuzzing,stateful)
#   ST_ACK             the distributor's --ack: delivered (default) or accepted
#   ST_NETNS           0 to run without the private network namespace
#
# The hooks in scripts/schemathesis_hooks.py send NDJSON and gzip/zstd bodies as the
# distributor reads them, and keep registrations away from the two analyzers started here,
# so that /packets always has an analyzer to deliver to (generated registrations add
# analyzers at unreachable addresses, which turn unhealthy at their first delivery or
# probe and are routed around; 503 stays rare). The distributor delivers to and probes
# whatever is registered: in the private namespace nothing but 127.0.0.1 exists, and
# without one (ST_NETNS=0, or no unshare) the hooks rewrite registered URLs to 127.0.0.1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/target/schemathesis"
SCHEMATHESIS_VERSION=4.32.5
ZSTANDARD_VERSION=0.25.0
OPENAPI_SPEC_VALIDATOR_VERSION=0.9.0

log() { printf '[schemathesis.sh] %s\n' "$*" >&2; }

if [[ "${1:-}" != "--inside" ]]; then
    # ---- Outside: everything that needs the package registries ----------------------
    VENV="${ST_VENV:-$ROOT/target/schemathesis-venv}"
    if [[ ! -x "$VENV/bin/st" ]] || [[ "$("$VENV/bin/st" --version 2>/dev/null)" != *"$SCHEMATHESIS_VERSION"* ]] \
        || ! "$VENV/bin/python" -c 'import zstandard, openapi_spec_validator' 2>/dev/null; then
        log "Installing schemathesis==$SCHEMATHESIS_VERSION into $VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check \
            "schemathesis==$SCHEMATHESIS_VERSION" "zstandard==$ZSTANDARD_VERSION" \
            "openapi-spec-validator==$OPENAPI_SPEC_VALIDATOR_VERSION"
    fi
    log "Validating openapi.yaml"
    "$VENV/bin/openapi-spec-validator" "$ROOT/openapi.yaml" >&2

    if [[ -z "${LOGDIST_BIN:-}" ]]; then
        log "Building logdist (debug)"
        (cd "$ROOT" && cargo build --quiet -p logdist)
        LOGDIST_BIN="$ROOT/target/debug/logdist"
    fi
    [[ -x "$LOGDIST_BIN" ]] || { log "no executable at LOGDIST_BIN=$LOGDIST_BIN"; exit 2; }
    export LOGDIST_BIN VENV

    if [[ "${ST_NETNS:-1}" != "0" ]] && command -v unshare >/dev/null && command -v ip >/dev/null; then
        if [[ "$(id -u)" == "0" ]] && unshare --net true 2>/dev/null; then
            exec unshare --net -- bash "${BASH_SOURCE[0]}" --inside "$@"
        elif unshare --user --map-root-user --net true 2>/dev/null; then
            exec unshare --user --map-root-user --net -- bash "${BASH_SOURCE[0]}" --inside "$@"
        fi
    fi
    log "No private network namespace: running on the host's loopback; registered URLs are rewritten to 127.0.0.1."
    export ST_REWRITE_URLS=1
    exec bash "${BASH_SOURCE[0]}" --inside --no-netns "$@"
fi

# ---- Inside: start the system, run Schemathesis, stop what was started ----------------
shift
if [[ "${1:-}" == "--no-netns" ]]; then
    shift
else
    ip link set lo up
    log "In a private network namespace: only 127.0.0.1 is reachable."
fi

mkdir -p "$OUT"
rm -f "$OUT"/*.log "$OUT/junit.xml" "$OUT/output.txt"

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
P1=$(free_port)
P2=$(free_port)
while [[ "$P2" == "$P1" ]]; do P2=$(free_port); done
PD=$(free_port)
while [[ "$PD" == "$P1" || "$PD" == "$P2" ]]; do PD=$(free_port); done
TOKEN="st-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
BASE="http://127.0.0.1:$PD"

export RUST_LOG="${RUST_LOG:-info}"
"$LOGDIST_BIN" analyzer --id 1 --no-register --listen "127.0.0.1:$P1" >"$OUT/analyzer_1.log" 2>&1 &
PIDS+=($!)
"$LOGDIST_BIN" analyzer --id 2 --no-register --listen "127.0.0.1:$P2" >"$OUT/analyzer_2.log" 2>&1 &
PIDS+=($!)
# --shutdown-grace bounds how long a deregistration waits for the analyzer's queue.
"$LOGDIST_BIN" distributor --listen "127.0.0.1:$PD" \
    --analyzer "analyzer_1=http://127.0.0.1:$P1@0.6" \
    --analyzer "analyzer_2=http://127.0.0.1:$P2@0.4" \
    --token "$TOKEN" --ack "${ST_ACK:-delivered}" --shutdown-grace 3s >"$OUT/distributor.log" 2>&1 &
PIDS+=($!)

health() {
    "$VENV/bin/python" - "$1" <<'EOF'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=1) as r:
        body = json.load(r)
    sys.exit(0 if r.status == 200 and body.get("analyzers_online", 0) >= 2 else 1)
except Exception:
    sys.exit(1)
EOF
}
for i in $(seq 100); do
    health "$BASE/health" && break
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || { log "a process exited early; see $OUT/*.log"; exit 2; }
    done
    [[ $i == 100 ]] && { log "the distributor is not healthy after 20 s; see $OUT/distributor.log"; exit 2; }
    sleep 0.2
done
log "distributor $BASE (pid ${PIDS[2]}), analyzers :$P1 :$P2 (pids ${PIDS[0]} ${PIDS[1]})"

ARGS=(
    --config-file "$ROOT/scripts/schemathesis.toml"
    run "$ROOT/openapi.yaml"
    --url "$BASE"
    --header "Authorization: Bearer $TOKEN"
    --checks all
    --mode all
    --phases "${ST_PHASES:-examples,coverage,fuzzing,stateful}"
    --max-examples "${ST_MAX_EXAMPLES:-100}"
    --workers "${ST_WORKERS:-2}"
    --request-timeout 20
    --generation-database none
    --suppress-health-check too_slow,filter_too_much
    --report junit --report-junit-path "$OUT/junit.xml"
    --continue-on-failure
    --output-sanitize false
    --no-color
)
[[ -n "${ST_SEED:-}" ]] && ARGS+=(--seed "$ST_SEED")

log "st ${ARGS[*]/$TOKEN/***} $*"
set +e
# Schemathesis keeps its replay data in ./.schemathesis: run it from $OUT so that lands there
# (`cd target/schemathesis && ../schemathesis-venv/bin/st replay ID` replays a failure).
cd "$OUT"
SCHEMATHESIS_HOOKS="$ROOT/scripts/schemathesis_hooks.py" \
    timeout --signal=INT --kill-after=30 "${ST_TIMEOUT:-900}" \
    "$VENV/bin/st" "${ARGS[@]}" "$@" 2>&1 | sed "s/$TOKEN/***/g" | tee "$OUT/output.txt"
status=${PIPESTATUS[0]}
set -e
[[ $status == 124 ]] && log "Schemathesis ran out of time (ST_TIMEOUT=${ST_TIMEOUT:-900}s)."
for pid in "${PIDS[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
        log "process $pid died during the run; see $OUT/*.log"
        [[ $status == 0 ]] && status=3
    fi
done
log "report: $OUT/output.txt, $OUT/junit.xml; logs: $OUT/*.log; exit $status"
exit "$status"
