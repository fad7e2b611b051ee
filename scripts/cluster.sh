#!/usr/bin/env bash
# A load-balanced ChatPulse cluster on one machine, without Docker: a private
# Redis, the standalone Twitch simulator, three instances in distributed mode
# (PostgreSQL + Redis, EventSub over the webhook transport) and HAProxy in
# front of them, configured like the Kubernetes Ingress
# (deploy/haproxy/haproxy.cfg).
#
#   scripts/cluster.sh start              start everything, wait until ready, print the URLs
#   scripts/cluster.sh stop               end exactly what `start` started
#   scripts/cluster.sh status             what runs, instance readiness, HAProxy's view
#   scripts/cluster.sh env                the `export` lines that `start` prints
#   scripts/cluster.sh stop-instance N    SIGTERM instance N (1-3), wait until it has exited
#   scripts/cluster.sh start-instance N   start instance N again, wait until it is ready
#   scripts/cluster.sh restart-instance N both of the above
#   scripts/cluster.sh kill-instance N    SIGKILL instance N (a crash), wait until it is gone
#   scripts/cluster.sh redis-stop         stop the cluster's Redis (an outage)
#   scripts/cluster.sh redis-start        start it again, empty (it keeps nothing on disk)
#
# `start` prints `export CLUSTER_…=` lines on stdout (eval them) and the URLs on
# stderr. Every process's pid file and log are in the state directory.
#
# Environment:
#   CHATPULSE_BIN         the binary (default: $CARGO_TARGET_DIR or target, /debug/chatpulse;
#                         `make cluster` builds it)
#   CLUSTER_STATE_DIR     pid files, logs, Redis's directory (default: target/cluster)
#   CLUSTER_BASE_PORT     18080: the load balancer; +1..+3 the instances, +4..+6 their
#                         METRICS_PORT, +8 HAProxy's statistics, +10 the simulator, +20 Redis
#   CLUSTER_DATABASE      the PostgreSQL database, dropped and created by `start`
#                         (default: chatpulse_cluster) on 127.0.0.1:5432
#   CLUSTER_SHUTDOWN_TIMEOUT  each instance's SHUTDOWN_TIMEOUT (default: 10s)
# Other settings (LOG_LEVEL, VOTE_RATE_LIMIT_*, CONNECTION_RATE_*, …) pass through
# to the instances from the caller's environment.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=${CLUSTER_STATE_DIR:-$root/target/cluster}
base=${CLUSTER_BASE_PORT:-18080}
database=${CLUSTER_DATABASE:-chatpulse_cluster}
bin=${CHATPULSE_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/chatpulse}
shutdown_timeout=${CLUSTER_SHUTDOWN_TIMEOUT:-10s}

lb_port=$base
stats_port=$((base + 8))
sim_port=$((base + 10))
redis_port=$((base + 20))
instance_port() { echo $((base + $1)); }
metrics_port() { echo $((base + 3 + $1)); }

log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }

# shellcheck source=scripts/lib/services.sh
. "$root/scripts/lib/services.sh"

# --- Processes --------------------------------------------------------------

# spawn NAME COMMAND...: runs COMMAND in the background with its output in
# NAME.log and its pid in NAME.pid (written by the process itself, so the pid
# is the command's own, whatever runs it).
spawn() {
  local name=$1
  shift
  rm -f "$state/$name.pid"
  # shellcheck disable=SC2016 # expanded by the inner shell
  bash -c 'echo $$ > "$0"; exec "$@"' "$state/$name.pid" "$@" >>"$state/$name.log" 2>&1 </dev/null &
  for _ in $(seq 1 100); do [ -s "$state/$name.pid" ] && return 0; sleep 0.05; done
  die "$name did not start (see $state/$name.log)"
}

# The pid of NAME if it is still the process `spawn` started (its command
# line names what we expect), else nothing.
pid_of() {
  local name=$1 expect=$2 pid
  [ -s "$state/$name.pid" ] || return 0
  pid=$(cat "$state/$name.pid")
  if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$expect"; then
    echo "$pid"
  fi
}

# end NAME EXPECT SIGNAL SECONDS: signals the process and waits for it to go
# (SIGKILL after SECONDS).
end() {
  local name=$1 expect=$2 signal=$3 seconds=$4 pid
  pid=$(pid_of "$name" "$expect")
  if [ -n "$pid" ]; then
    kill -s "$signal" "$pid" 2>/dev/null || true
    local tries=$((seconds * 20))
    while [ -d "/proc/$pid" ] && [ "$tries" -gt 0 ]; do
      # A zombie has exited; its parent (the shell that ran `start`) may be gone.
      grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && break
      sleep 0.05
      tries=$((tries - 1))
    done
    if [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
      log "$name did not stop within ${seconds}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$state/$name.pid"
}

# wait_until SECONDS WHAT COMMAND...: polls COMMAND every 100 ms.
wait_until() {
  local seconds=$1 what=$2
  shift 2
  local tries=$((seconds * 10))
  until "$@" >/dev/null 2>&1; do
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || die "$what: not within ${seconds}s"
    sleep 0.1
  done
}

# --- Components -------------------------------------------------------------

redis_up() { redis-cli -h 127.0.0.1 -p "$redis_port" ping | grep -q PONG; }

start_redis() {
  mkdir -p "$state/redis"
  spawn redis redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$state/redis"
  wait_until 10 "Redis on port $redis_port" redis_up
}

stop_redis() { end redis redis-server TERM 10; }

start_simulator() {
  spawn twitch-sim "$bin" twitch-sim --port "$sim_port" \
    --redirect-uri "http://localhost:$lb_port/auth/callback"
  wait_until 20 "the Twitch simulator on port $sim_port" grep -q 'export BOT_USER_ID=' "$state/twitch-sim.log"
  # It prints the settings that point an instance at it.
  grep -E '^ +export [A-Z_]+=' "$state/twitch-sim.log" | sed 's/^ *//' >"$state/twitch.env"
}

# An instance's readiness body says every dependency is fine.
instance_healthy() {
  curl -fsS --max-time 2 "http://127.0.0.1:$(instance_port "$1")/health/ready" | grep -q '"dependencies_ok":true'
}

start_instance() {
  local n=$1
  [ -x "$bin" ] || die "no chatpulse binary at $bin (run make cluster, or set CHATPULSE_BIN)"
  [ -z "$(pid_of "instance-$n" "$bin")" ] || die "instance $n is already running"
  mkdir -p "$state/instance-$n"
  (
    # Each instance starts in its own directory, so no `.env` of the
    # developer's applies; the settings below are the whole configuration.
    cd "$state/instance-$n"
    # shellcheck disable=SC1091 # written by start_simulator
    . "$state/twitch.env"
    unset DATA_DIR TWITCH_SIM_PORT TWITCH_REDIRECT_URI
    export APP_ENV=development LOG_FORMAT=text
    PORT=$(instance_port "$n")
    METRICS_PORT=$(metrics_port "$n")
    export PORT METRICS_PORT
    export PUBLIC_URL="http://localhost:$lb_port"
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$database"
    export REDIS_URL="redis://127.0.0.1:$redis_port"
    export EVENTSUB_TRANSPORT=webhook
    # Twitch (here: the simulator) delivers through the load balancer, to
    # whichever instance is in rotation.
    export WEBHOOK_CALLBACK_URL="http://127.0.0.1:$lb_port/webhooks/eventsub"
    export TRUSTED_PROXIES=127.0.0.1
    export SHUTDOWN_TIMEOUT="$shutdown_timeout"
    spawn "instance-$n" "$bin" serve
  )
  wait_until 60 "instance $n ready with every dependency" instance_healthy "$n"
}

stop_instance() { end "instance-$1" "$bin" TERM 40; }
kill_instance() { end "instance-$1" "$bin" KILL 10; }

haproxy_env() {
  export CHATPULSE_LB_BIND="127.0.0.1:$lb_port" CHATPULSE_STATS_BIND="127.0.0.1:$stats_port"
  CHATPULSE_SERVER_1=127.0.0.1:$(instance_port 1)
  CHATPULSE_SERVER_2=127.0.0.1:$(instance_port 2)
  CHATPULSE_SERVER_3=127.0.0.1:$(instance_port 3)
  export CHATPULSE_SERVER_1 CHATPULSE_SERVER_2 CHATPULSE_SERVER_3
}

# HAProxy's statistics as CSV: backend,server,status (UP, DOWN, …).
servers_state() {
  curl -fsS --max-time 2 "http://127.0.0.1:$stats_port/;csv" |
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
             $2 != "FRONTEND" && $2 != "BACKEND" { print $col["# pxname"] "," $2 "," $col["status"] }'
}

all_servers_up() { [ "$(servers_state | grep -c '^chatpulse,i[123],UP$')" -eq 3 ]; }

start_haproxy() {
  haproxy_env
  haproxy -c -q -f "$root/deploy/haproxy/haproxy.cfg" || die "deploy/haproxy/haproxy.cfg is not valid"
  spawn haproxy haproxy -db -f "$root/deploy/haproxy/haproxy.cfg"
  wait_until 20 "HAProxy sees all three instances up" all_servers_up
}

print_env() {
  echo "export CLUSTER_URL=http://127.0.0.1:$lb_port"
  echo "export CLUSTER_STATS_URL=http://127.0.0.1:$stats_port"
  echo "export CLUSTER_SIM_URL=http://127.0.0.1:$sim_port"
  echo "export CLUSTER_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$database"
  echo "export CLUSTER_REDIS_URL=redis://127.0.0.1:$redis_port"
  echo "export CLUSTER_INSTANCE_URLS=http://127.0.0.1:$(instance_port 1),http://127.0.0.1:$(instance_port 2),http://127.0.0.1:$(instance_port 3)"
  echo "export CLUSTER_METRICS_URLS=http://127.0.0.1:$(metrics_port 1),http://127.0.0.1:$(metrics_port 2),http://127.0.0.1:$(metrics_port 3)"
}

# --- Commands -----------------------------------------------------------------

stop() {
  end haproxy haproxy TERM 10
  for n in 3 2 1; do stop_instance "$n"; done
  end twitch-sim "$bin" TERM 10
  stop_redis
}

start() {
  [ -x "$bin" ] || die "no chatpulse binary at $bin (run make cluster, or set CHATPULSE_BIN)"
  ensure_postgres
  ensure_redis_installed
  ensure_haproxy_installed
  ensure_curl_installed
  mkdir -p "$state"
  stop
  rm -f "$state"/*.log
  fresh_database "$database"
  start_redis
  start_simulator
  # The first instance applies the migrations alone; the other two then start together.
  start_instance 1
  start_instance 2 &
  local second=$!
  start_instance 3
  wait "$second"
  start_haproxy
  print_env
  cat >&2 <<TEXT

ChatPulse cluster: three instances behind HAProxy (state and logs in $state)

  load balancer:  http://localhost:$lb_port          (dashboard: http://localhost:$lb_port/)
  instances:      http://localhost:$(instance_port 1)  http://localhost:$(instance_port 2)  http://localhost:$(instance_port 3)
  HAProxy stats:  http://localhost:$stats_port/
  Twitch sim:     http://localhost:$sim_port/sim/chat   (log in on the dashboard as demo_streamer)
  PostgreSQL:     postgres://postgres@127.0.0.1:5432/$database
  Redis:          redis://127.0.0.1:$redis_port

  scripts/cluster.sh status | restart-instance N | kill-instance N | redis-stop | redis-start
  make cluster-stop ends it.
TEXT
}

status() {
  local name pid
  for name in redis twitch-sim instance-1 instance-2 instance-3 haproxy; do
    case $name in
      redis) pid=$(pid_of redis redis-server) ;;
      haproxy) pid=$(pid_of haproxy haproxy) ;;
      *) pid=$(pid_of "$name" "$bin") ;;
    esac
    if [ -z "$pid" ]; then
      printf '%-11s stopped\n' "$name"
    elif [[ $name == instance-* ]]; then
      local n=${name#instance-} ready
      ready=$(curl -sS --max-time 2 -o /dev/null -w '%{http_code}' \
        "http://127.0.0.1:$(instance_port "$n")/health/ready" 2>/dev/null || true)
      printf '%-11s pid %-8s port %s  /health/ready %s\n' "$name" "$pid" "$(instance_port "$n")" "$ready"
    else
      printf '%-11s pid %s\n' "$name" "$pid"
    fi
  done
  if [ -n "$(pid_of haproxy haproxy)" ]; then
    echo "HAProxy's view (backend,server,status):"
    servers_state | sed 's/^/  /'
  fi
}

instance_number() {
  case "${1:-}" in
    1 | 2 | 3) echo "$1" ;;
    *) die "instance number must be 1, 2 or 3" ;;
  esac
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) print_env ;;
  stop-instance) stop_instance "$(instance_number "${2:-}")" ;;
  start-instance) start_instance "$(instance_number "${2:-}")" ;;
  restart-instance)
    n=$(instance_number "${2:-}")
    stop_instance "$n"
    start_instance "$n"
    ;;
  kill-instance) kill_instance "$(instance_number "${2:-}")" ;;
  redis-stop) stop_redis ;;
  redis-start) start_redis ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 64
    ;;
esac
