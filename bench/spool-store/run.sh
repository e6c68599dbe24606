#!/usr/bin/env bash
# The spool storage comparison of issue 31 (see README.md): logdist's segment log against
# redb, each at `--spool-fsync 10ms` and `always` (and redb's `always` with group commit),
# RUNS runs of each in rotating order, each a process of its own; prints the medians as a
# markdown table and writes it to bench/results/spool-store-<date>.md.
#
#   bench/spool-store/run.sh
#   RUNS=1 PACKETS=5000 bench/spool-store/run.sh
#
# Knobs: RUNS=3; PACKETS (appended per run at 10ms, default 100000) and PACKETS_ALWAYS (at
# always, default 20000); TASKS=8 concurrent writers; LAG=1000 packets between a packet's
# append and its release; DIR_BASE=/tmp (where each run's store is made, then deleted).
# Run it on an otherwise idle machine: it measures the disk as much as the code. The
# build is niced; the measurement is not.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
RUNS="${RUNS:-3}"
PACKETS="${PACKETS:-100000}"
PACKETS_ALWAYS="${PACKETS_ALWAYS:-20000}"
TASKS="${TASKS:-8}"
LAG="${LAG:-1000}"
DIR_BASE="${DIR_BASE:-/tmp}"

nice -n 19 cargo build --release --quiet
bin="$here/target/release/spool-store"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

configs=(
  "segment-log 10ms $PACKETS"
  "redb 10ms $PACKETS"
  "segment-log always $PACKETS_ALWAYS"
  "redb always $PACKETS_ALWAYS"
  "redb always-grouped $PACKETS_ALWAYS"
)
lines="$(mktemp)"
trap 'rm -f "$lines"' EXIT
for ((run = 0; run < RUNS; run++)); do
  for ((i = 0; i < ${#configs[@]}; i++)); do
    # Rotating order: each configuration runs first in some round.
    read -r store fsync packets <<<"${configs[$(((i + run) % ${#configs[@]}))]}"
    echo "run $((run + 1))/$RUNS: $store $fsync ($packets packets)" >&2
    timeout 60 "$bin" run --store "$store" --fsync "$fsync" --packets "$packets" \
      --tasks "$TASKS" --lag "$LAG" --dir-base "$DIR_BASE" | tee -a "$lines" >&2
  done
done

# The table, in the order of `configs`.
sorted="$(mktemp)"
trap 'rm -f "$lines" "$sorted"' EXIT
for config in "${configs[@]}"; do
  read -r store fsync _ <<<"$config"
  awk -F'\t' -v s="$store" -v f="$fsync" '$1 == s && $2 == f' "$lines" >>"$sorted"
done
table="$("$bin" table <"$sorted")"
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

disk="$(df -h "$DIR_BASE" | awk 'NR == 2 {print $1 ", " $2}')"
fs="$(findmnt -no FSTYPE --target "$DIR_BASE" 2>/dev/null || echo unknown)"
machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2 / 1048576}' /proc/meminfo), $DIR_BASE on $disk ($fs), $(uname -r); load average $load_before before, $load_after after"
redb="$(awk '/^name = "redb"/ {getline; print $3}' Cargo.lock | tr -d '"')"
date="$(date -u +%F)"
out="$here/../results/spool-store-$date.md"
{
  echo "# Spool storage: logdist's segment log against redb $redb ($date)"
  echo
  echo "Machine: $machine. $TASKS concurrent writers append packets of 100 NDJSON messages of 150 bytes (15,000 bytes); each is released $LAG packets later. $PACKETS packets a run at \`10ms\`, $PACKETS_ALWAYS at \`always\`; median of $RUNS runs in rotating order. Latency: one \`append\` (logdist) or one commit through the writer thread (redb). Written to disk: this process's \`write_bytes\` less \`cancelled_write_bytes\` (\`/proc/self/io\`; the filesystem journal is not in it), after the store was closed. Peak on disk: the largest sum of the blocks allocated to the store's files, sampled every 20 ms. See bench/spool-store/README.md."
  echo
  echo "$table"
} >"$out"
echo
echo "$table"
echo
echo "Written to $out"
