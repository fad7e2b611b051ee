#!/usr/bin/env bash
# Makes sure the local PostgreSQL and Redis that the test suites use are
# installed and running (and that HAProxy, Chromium and ChromeDriver are
# installed), creates a fresh test database, and prints the URLs as `export`
# lines for the caller to eval:
#
#   eval "$(scripts/test-services.sh)"
#
# Installs with apt-get when a server is missing (needs root), starts a
# stopped one, and fails loudly when a server cannot be reached.
set -euo pipefail

log() { echo "test-services: $*" >&2; }

# shellcheck source=scripts/lib/services.sh
. "$(dirname "$0")/lib/services.sh"

# --- PostgreSQL and Redis ---------------------------------------------------
ensure_postgres
# TEST_DB_NAME: another name, for several checkouts testing on one machine at once.
db=${TEST_DB_NAME:-chatpulse_test}
fresh_database "$db"
ensure_redis

# --- HAProxy and curl for the one-machine cluster (scripts/cluster.sh) -------
ensure_haproxy_installed
ensure_curl_installed

# --- Headless browser for the overlay tests ---------------------------------
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  install_packages chromium chromium-driver
fi

echo "export TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db"
echo "export TEST_REDIS_URL=redis://127.0.0.1:6379"
echo "export TEST_CHROMEDRIVER=$(command -v chromedriver)"
echo "export TEST_CHROMIUM=$(command -v chromium)"
