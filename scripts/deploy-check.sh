#!/usr/bin/env bash
# `make deploy-check`: validates everything under deploy/ (scripts/deploy_check.py
# says what). Installs what it needs: a Python venv under target/deploy-check
# with the pinned validators (scripts/deploy-check-requirements.txt: kubernetes-
# validate with its Kubernetes schemas, hadolint, PyYAML) from PyPI, HAProxy and
# promtool (Debian's prometheus package) with apt-get, and builds chatpulse to
# read a running instance's /metrics.
#
# First the checker's own tests (it must catch a wrong manifest or metric
# name), then the real check, then the real check again on a copy of deploy/
# with deliberate mistakes, which must fail.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=${CARGO_TARGET_DIR:-$root/target}/deploy-check
venv=$work/venv
requirements=scripts/deploy-check-requirements.txt
# The Kubernetes versions every manifest must validate against: the oldest we
# support and the newest the pinned kubernetes-validate knows.
versions=(--kubernetes-version 1.30.0 --kubernetes-version 1.37.0)

log() { echo "deploy-check: $*" >&2; }
# shellcheck source=scripts/lib/services.sh
. "$root/scripts/lib/services.sh"

# --- Tools ------------------------------------------------------------------
ensure_haproxy_installed
command -v promtool >/dev/null 2>&1 || install_packages --no-install-recommends prometheus
mkdir -p "$work"
stamp=$venv/.requirements
if ! cmp -s "$requirements" "$stamp" 2>/dev/null; then
  log "creating the validators' venv in $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" 2>/dev/null || { install_packages python3-venv && python3 -m venv "$venv"; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi
python=$venv/bin/python

# CHATPULSE_BIN: a binary built already (make test passes the test build's).
if [ -n "${CHATPULSE_BIN:-}" ]; then
  binary=$CHATPULSE_BIN
else
  log "building chatpulse"
  cargo build --quiet --bin chatpulse
  binary=${CARGO_TARGET_DIR:-$root/target}/debug/chatpulse
fi

# --- The checker's own tests ------------------------------------------------
log "testing the checker"
"$python" -m unittest discover -s scripts -p 'test_deploy_check.py'

# --- The real check -----------------------------------------------------------
log "checking deploy/"
"$python" scripts/deploy_check.py "${versions[@]}" --binary "$binary" \
  --save-metrics "$work/metrics.txt" --hadolint "$venv/bin/hadolint"

# --- Deliberate mistakes must fail ---------------------------------------------
broken=$work/broken
rm -rf "$broken"
mkdir -p "$broken/src/http"
cp -r deploy docs .dockerignore Cargo.toml Cargo.lock static migrations redis-functions templates "$broken/"
cp src/metrics.rs "$broken/src/"
cp src/http/mod.rs "$broken/src/http/"
# A metric that does not exist in the dashboard and in an alert, a field
# Kubernetes does not know, a file compose mounts that is not there.
sed -i 's/chatpulse_websocket_clients/chatpulse_websocket_clientz/' "$broken/deploy/grafana/chatpulse.json"
sed -i 's/chatpulse_eventsub_ready) < 1/chatpulse_eventsub_readyy) < 1/' "$broken/deploy/prometheus/alerts.yml"
sed -i 's/^  revisionHistoryLimit: 5$/  revisionHistoryLimit: 5\n  replica: 3/' "$broken/deploy/k8s/30-deployment.yaml"
sed -i 's|./haproxy/haproxy.cfg:|./haproxy/missing.cfg:|' "$broken/deploy/compose.yaml"
if "$python" scripts/deploy_check.py --root "$broken" "${versions[@]}" --metrics-file "$work/metrics.txt" \
  --hadolint "$venv/bin/hadolint" >"$work/broken.log" 2>&1; then
  log "the check passed a deploy/ with deliberate mistakes"
  cat "$work/broken.log" >&2
  exit 1
fi
for expected in chatpulse_websocket_clientz chatpulse_eventsub_readyy "'replica' was unexpected" missing.cfg; do
  if ! grep -qF -- "$expected" "$work/broken.log"; then
    log "the check did not report the deliberate mistake: $expected"
    cat "$work/broken.log" >&2
    exit 1
  fi
done
log "deliberate mistakes were caught: a wrong metric in the dashboard and in an alert, an unknown field, a missing file"
log "all checks passed"
