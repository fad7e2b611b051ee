#!/usr/bin/env bash
# `make audit`: `cargo audit` of the lockfiles (the workspace's and fuzz/'s)
# against the RustSec advisory database, offline (--no-fetch): the machines
# that run it reach package registries only, and the database is a git
# repository elsewhere. The database is `AUDIT_DB` when set (for instance
# ~/.cargo/advisory-db, which an online `cargo audit` keeps), else the
# snapshot kept in the repository, audit/advisory-db (audit/README.md: how
# fresh it is and how it is refreshed). Its date and size are printed on every
# run.
#
# First a canary: audit/canary/Cargo.lock holds the database's own test
# advisory's vulnerable crate and must be reported; a database that finds
# nothing fails here instead of passing silently. Then every lockfile: a
# vulnerability fails the run; warnings (unmaintained, unsound) are printed.
#
# `scripts/audit.sh refresh` (`make audit-refresh`) replaces the snapshot with
# the whole current database; it needs git access to the database's
# repository (AUDIT_DB_URL).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
version=0.22.2
snapshot=audit/advisory-db
db=${AUDIT_DB:-$snapshot}
url=${AUDIT_DB_URL:-https://github.com/rustsec/advisory-db.git}
log() { echo "audit: $*" >&2; }

if [ "${1:-}" = refresh ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  git clone --quiet --depth 1 "$url" "$tmp/db"
  rm -rf "$snapshot/crates" "$snapshot/rust"
  cp -r "$tmp/db/crates" "$tmp/db/rust" "$snapshot/"
  count=$(find "$snapshot/crates" "$snapshot/rust" -name 'RUSTSEC-*.md' | wc -l)
  {
    echo "source: $url at $(git -C "$tmp/db" rev-parse HEAD)"
    echo "taken: $(date -u +%F)"
    echo "advisories: $count"
  } >"$snapshot/SNAPSHOT"
  log "snapshot refreshed: $count advisories"
  exit 0
fi

if ! cargo audit --version 2>/dev/null | grep -q " $version\$"; then
  log "installing cargo-audit $version"
  cargo install cargo-audit --locked --version "$version"
fi

if [ "$db" = "$snapshot" ]; then
  taken=$(sed -n 's/^taken: //p' "$snapshot/SNAPSHOT")
  age=$(( ($(date -u +%s) - $(date -u -d "$taken" +%s)) / 86400 ))
  log "advisory database: $snapshot, $(sed -n 's/^advisories: //p' "$snapshot/SNAPSHOT") advisories, taken $taken ($age days ago)"
  if [ "$age" -gt 30 ]; then
    log "WARNING: the snapshot is $age days old; run make audit-refresh where the database's repository is reachable"
  fi
else
  log "advisory database: $db"
fi

args=(--db "$db" --no-fetch --stale --no-yanked)
if cargo audit "${args[@]}" --quiet --file audit/canary/Cargo.lock >/dev/null 2>&1; then
  log "the canary's known vulnerability (RUSTSEC-2019-0024) was not reported: the database is empty or unreadable"
  exit 1
fi
for lockfile in Cargo.lock fuzz/Cargo.lock; do
  [ -f "$lockfile" ] || continue
  log "$lockfile"
  cargo audit "${args[@]}" --file "$lockfile"
done
