# shellcheck shell=bash
# Installing and starting the local servers that the test suites and the
# one-machine cluster use. Sourced by scripts/test-services.sh and
# scripts/cluster.sh; every function logs on stderr (through the caller's
# `log`) and leaves stdout to the caller.
#
# Servers missing from the machine are installed with apt-get (needs root or
# sudo); a stopped PostgreSQL is started.

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=false
install_packages() {
  if [ "$apt_updated" = false ]; then
    as_root apt-get update -qq >&2
    apt_updated=true
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >&2
}

# PostgreSQL on 127.0.0.1:5432, installed and started when needed.
ensure_postgres() {
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    install_packages postgresql
  fi
  local pg_version
  pg_version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    log "starting PostgreSQL $pg_version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start >&2 || true
    for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
  fi
  pg_isready -q -h 127.0.0.1 -p 5432 || { log "PostgreSQL is not reachable on 127.0.0.1:5432"; exit 1; }
}

# Runs one SQL statement as the PostgreSQL superuser.
psql_admin() {
  if psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -Atqc "$1"
  else
    as_root su postgres -c "psql -d postgres -v ON_ERROR_STOP=1 -Atqc \"$1\""
  fi
}

# Drops (disconnecting its clients) and creates an empty database.
fresh_database() {
  PGOPTIONS="-c client_min_messages=warning" psql_admin "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >&2
  psql_admin "CREATE DATABASE $1" >&2
  log "created fresh database $1"
}

ensure_redis_installed() {
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    install_packages redis-server
  fi
}

# The shared Redis on 127.0.0.1:6379, started when it is not running.
ensure_redis() {
  ensure_redis_installed
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    log "starting Redis"
    as_root mkdir -p /var/lib/redis /var/log/redis
    as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log >&2
    for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
  fi
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || { log "Redis is not reachable on 127.0.0.1:6379"; exit 1; }
}

# HAProxy, the load balancer of the one-machine cluster. Only installed: the
# cluster starts its own process with its own configuration.
ensure_haproxy_installed() {
  command -v haproxy >/dev/null 2>&1 || install_packages haproxy
}

ensure_curl_installed() {
  command -v curl >/dev/null 2>&1 || install_packages curl
}
