#!/usr/bin/env bash
# A throwaway 3-master Redis Cluster on loopback for the contract tests.
#
#   scripts/redis-cluster.sh start   # prints `export TEST_REDIS_CLUSTER_URL=...`
#   scripts/redis-cluster.sh stop
#
# Ports 7101-7103 (override with REDIS_CLUSTER_BASE_PORT); state in a fresh
# temporary directory each start; nothing is persisted.
set -euo pipefail

base=${REDIS_CLUSTER_BASE_PORT:-7101}
ports=("$base" $((base + 1)) $((base + 2)))
dir=${CLUSTER_DIR:-/tmp/chatpulse-redis-cluster-$base}

log() { echo "redis-cluster: $*" >&2; }

stop() {
  for port in "${ports[@]}"; do
    redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
  done
  rm -rf "$dir"
}

start() {
  command -v redis-server >/dev/null || { log "redis-server is not installed (run scripts/test-services.sh)"; exit 1; }
  stop
  for port in "${ports[@]}"; do
    mkdir -p "$dir/$port"
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file "$dir/$port/nodes.conf" --cluster-node-timeout 5000 \
      --save "" --appendonly no --dir "$dir/$port" --daemonize yes \
      --logfile "$dir/$port/redis.log" >&2
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
  redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >&2
  for _ in $(seq 1 100); do
    if redis-cli -h 127.0.0.1 -p "$base" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; then
      log "3 masters up on ports ${ports[*]}"
      # Quoted: the URL's `&` would otherwise end the command under `eval`.
      echo "export TEST_REDIS_CLUSTER_URL='redis-cluster://127.0.0.1:${ports[0]}?node=127.0.0.1:${ports[1]}&node=127.0.0.1:${ports[2]}'"
      return 0
    fi
    sleep 0.1
  done
  log "cluster did not become healthy"
  exit 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 64 ;;
esac
