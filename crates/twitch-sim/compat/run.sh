#!/usr/bin/env bash
# The simulator against a real Twitch client library: pyTwitchAPI (PyPI
# `twitchAPI`, pinned in requirements.txt) in a venv under the target
# directory, driving the `twitch-sim` binary through the library's public
# options only. Part of `make test` (`make compat`).
#
# Fails — never skips — when the venv cannot be built (e.g. PyPI is not
# reachable and the venv does not exist yet).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/compat-venv"
python="${PYTHON:-python3}"

# The venv is rebuilt when the pins (or the interpreter) change.
stamp="$(cat "$here/requirements.txt" <("$python" --version 2>&1) | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]]; then
  echo "compat: building $venv (pyTwitchAPI from PyPI)" >&2
  rm -rf "$venv"
  if ! "$python" -m venv "$venv" \
    || ! "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$here/requirements.txt"; then
    echo "compat: FAILED to build the pyTwitchAPI venv at $venv" >&2
    rm -rf "$venv"
    exit 1
  fi
  echo "$stamp" > "$venv/.stamp"
fi

# TWITCH_SIM_BIN: a binary built already (make test passes the test build's).
sim=${TWITCH_SIM_BIN:-}
if [ -z "$sim" ]; then
  (cd "$root" && "${CARGO:-cargo}" build --quiet -p twitch-sim --bin twitch-sim)
  sim=$target/debug/twitch-sim
fi
exec timeout 120 "$venv/bin/python" "$here/test_pytwitchapi.py" "$sim"
