#!/usr/bin/env bash
# Refreshes the README's screenshots: runs the browser tests (headless
# Chromium at OBS sizes, against the test servers) and copies the pictures
# the README shows from target/screenshots/ into docs/img/.
#
#   scripts/screenshots.sh
#
# Needs what `make test` provisions: eval "$(scripts/test-services.sh)" (or
# TEST_CHROMEDRIVER and the storage URLs set).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --test api -- browser
shots=target/screenshots
# target name → docs/img name
while read -r from to; do
  cp "$shots/$from" "docs/img/$to"
  echo "docs/img/$to"
done <<'LIST'
overlay-horizontal.png overlay.png
overlay-colour-blind.png overlay-colour-blind.png
overlay-vertical.png overlay-vertical.png
dashboard-status.png dashboard-status.png
dashboard.png dashboard.png
login.png login.png
LIST
