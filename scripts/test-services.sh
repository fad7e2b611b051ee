#!/usr/bin/env bash
# Makes sure the local PostgreSQL and Redis that the test suites use are
# installed and running, creates a fresh test database, and prints the URLs
# as `export` lines for the caller to eval:
#
#   eval "$(scripts/test-services.sh)"
#
# Installs with apt-get when a server is missing (needs root), starts a
# stopped one, and fails loudly when a server cannot be reached.
set -euo pipefail

log() { echo "test-services: $*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=false
install() {
  if [ "$apt_updated" = false ]; then
    as_root apt-get update -qq >&2
    apt_updated=true
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >&2
}

# --- PostgreSQL -----------------------------------------------------------
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  install postgresql
fi
pg_version=$(ls /etc/postgresql | sort -V | tail -n 1)
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  log "starting PostgreSQL $pg_version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start >&2 || true
  for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi
pg_isready -q -h 127.0.0.1 -p 5432 || { log "PostgreSQL is not reachable on 127.0.0.1:5432"; exit 1; }

psql_admin() {
  if psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -Atqc "$1"
  else
    as_root su postgres -c "psql -d postgres -v ON_ERROR_STOP=1 -Atqc \"$1\""
  fi
}
# TEST_DB_NAME: another name, for several checkouts testing on one machine at once.
db=${TEST_DB_NAME:-chatpulse_test}
psql_admin "DROP DATABASE IF EXISTS $db WITH (FORCE)" >&2
psql_admin "CREATE DATABASE $db" >&2
log "created fresh database $db"

# --- Redis ----------------------------------------------------------------
if ! command -v redis-server >/dev/null 2>&1; then
  install redis-server
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log >&2
  for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || { log "Redis is not reachable on 127.0.0.1:6379"; exit 1; }

# --- Headless browser for the overlay tests ---------------------------------
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  install chromium chromium-driver
fi

echo "export TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db"
echo "export TEST_REDIS_URL=redis://127.0.0.1:6379"
echo "export TEST_CHROMEDRIVER=$(command -v chromedriver)"
echo "export TEST_CHROMIUM=$(command -v chromium)"
