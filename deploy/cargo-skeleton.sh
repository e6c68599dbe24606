#!/bin/sh
# The workspace's skeleton, for the Dockerfile's dependency layer: every manifest, the
# lock file, and an empty stub at the path of every target the manifests declare or cargo
# discovers (lib, bins, benches, tests, examples, build scripts).
#
#   deploy/cargo-skeleton.sh SRC DEST
#
# SRC is the full workspace; DEST receives the skeleton. The list of targets comes from
# `cargo metadata`, so a target added to a manifest (a `[[bench]]`, a `[[test]]`) gets its
# stub without a change here: building on stubs never stops at "can't find `x` bench".
# The skeleton depends only on the manifests, so a code change leaves it byte-for-byte the
# same and Docker reuses the layer that compiled the dependencies.
set -eu

src=$(cd "$1" && pwd)
dest=$2
mkdir -p "$dest"

# Manifests and the lock file, at their places. Only what cargo reads: no sources.
(cd "$src" && find . -name target -prune -o \( -name Cargo.toml -o -name Cargo.lock \) -print) |
    while IFS= read -r file; do
        mkdir -p "$dest/$(dirname "$file")"
        cp "$file" "$dest/$file"
    done

# One stub per target. `--no-deps` reads the workspace's own manifests only: no registry,
# no network. Each target's `src_path` is absolute, under SRC. A stub is a valid crate
# root for every kind: `fn main` for bins, benches, tests, examples and build scripts,
# and harmless in a library (allowed as dead code). The metadata goes to a file first, so
# that a failure of cargo stops the script (sh has no pipefail).
metadata=$(mktemp)
trap 'rm -f "$metadata"' EXIT
cargo metadata --manifest-path "$src/Cargo.toml" --format-version 1 --no-deps --offline >"$metadata"
grep -o '"src_path":"[^"]*"' "$metadata" |
    sed 's/^"src_path":"//; s/"$//' |
    while IFS= read -r path; do
        case $path in
        "$src"/*) rel=${path#"$src"/} ;;
        *) echo "cargo-skeleton: target outside the workspace: $path" >&2; exit 1 ;;
        esac
        mkdir -p "$dest/$(dirname "$rel")"
        printf '#![allow(dead_code)]\nfn main() {}\n' >"$dest/$rel"
    done
