#!/usr/bin/env bash
# `make api-check`: a schema-driven tester (schemathesis, pinned in
# scripts/api-check-requirements.txt, in a venv under target/api-check built
# on first use) against a running embedded instance of the streamer API: every
# operation of GET /api/v1/openapi.json is called with generated valid and
# invalid requests, authenticated with a token made through the CLI. It fails
# on any 5xx and on any response that does not conform to the document (status
# code, content type, headers, body schema).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=${CARGO_TARGET_DIR:-$root/target}/api-check
venv=$work/venv
requirements=scripts/api-check-requirements.txt
log() { echo "api-check: $*" >&2; }

# --- The tester ----------------------------------------------------------------
mkdir -p "$work"
stamp=$venv/.requirements
if ! cmp -s "$requirements" "$stamp" 2>/dev/null; then
  log "creating the tester's venv in $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" 2>/dev/null || { apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$venv"; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi

# CHATPULSE_BIN: a binary built already (make test passes the test build's).
if [ -n "${CHATPULSE_BIN:-}" ]; then
  binary=$CHATPULSE_BIN
else
  log "building chatpulse"
  cargo build --quiet --bin chatpulse
  binary=${CARGO_TARGET_DIR:-$root/target}/debug/chatpulse
fi

# --- A running instance with a streamer and a token -----------------------------
data=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$data"
}
trap cleanup EXIT
# Embedded, on the built-in Twitch simulator (its port picked freely).
run() { env -i PATH="$PATH" HOME="${HOME:-/root}" DATA_DIR="$data" PORT="$port" TWITCH_SIM_PORT=0 LOG_LEVEL=warn "$binary" "$@"; }
run streamers add 4100000001 apicheck >/dev/null
token=$(run api-tokens create 4100000001 --name api-check 2>/dev/null)
# `exec`: the background job is the server itself, so $! is its pid and
# the clean-up stops it (a plain function call would leave it orphaned).
serve() { exec env -i PATH="$PATH" HOME="${HOME:-/root}" DATA_DIR="$data" PORT="$port" TWITCH_SIM_PORT=0 LOG_LEVEL=warn "$binary" serve; }
serve >"$work/server.log" 2>&1 &
server=$!
base=http://127.0.0.1:$port
for _ in $(seq 1 100); do
  curl -fsS "$base/health/ready" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; log "the server did not start"; exit 1; }
  sleep 0.2
done
curl -fsS "$base/health/ready" >/dev/null || { log "the server never became ready"; exit 1; }

# --- The check ------------------------------------------------------------------
# `--rate-limit auto` waits as `Retry-After` says when the token's budget is
# spent (a 429 is a documented answer, but a run of them would test nothing).
# Run in $work: the tester keeps its caches in the working directory.
log "checking $base/api/v1 against its OpenAPI document"
cd "$work"
"$venv/bin/schemathesis" run "$base/api/v1/openapi.json" \
  --url "$base" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples 40 \
  --seed 1 \
  --rate-limit auto \
  --workers 1 \
  --max-time 75 \
  --output-sanitize true
log "no 5xx, every response conforms"
