#!/usr/bin/env bash
# Copies what decides the dependency graph of the Cargo project in SOURCE to
# DEST: every Cargo.toml (the root's and any workspace member's, e.g. under
# crates/), Cargo.lock, build scripts, and an empty stand-in for every source
# file a manifest names (plus src/lib.rs). `cargo build` in DEST then compiles
# exactly the dependencies the real build needs, so the image's dependency
# layer changes only when the manifests do.
#
# The stand-ins carry the oldest possible mtime: the real build, which touches
# its sources, never mistakes a stand-in's output for theirs.
#
#   deploy/docker/skeleton.sh SOURCE DEST
set -euo pipefail
source=${1:?usage: skeleton.sh SOURCE DEST}
dest=${2:?usage: skeleton.sh SOURCE DEST}
mkdir -p "$dest"
cd "$source"
find . -name Cargo.toml -not -path './target/*' -not -path '*/target/*' -print0 |
  while IFS= read -r -d '' manifest; do
    dir=$(dirname "$manifest")
    mkdir -p "$dest/$dir/src"
    cp "$manifest" "$dest/$manifest"
    if [ -f "$dir/build.rs" ]; then cp "$dir/build.rs" "$dest/$dir/build.rs"; fi
    touch "$dest/$dir/src/lib.rs"
    # Targets a manifest names by path (`path = "src/main.rs"`); `path = "crates/x"`
    # of a dependency names no .rs file and is skipped.
    sed -n 's/^[[:space:]]*path[[:space:]]*=[[:space:]]*"\([^"]*\.rs\)".*/\1/p' "$manifest" |
      while IFS= read -r file; do
        mkdir -p "$dest/$dir/$(dirname "$file")"
        echo 'fn main() {}' >"$dest/$dir/$file"
      done
  done
cp Cargo.lock "$dest/"
find "$dest" -exec touch -d @0 {} +
