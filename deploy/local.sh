#!/usr/bin/env bash
# The deployment of docker-compose.yml as plain processes on one machine, from Debian's
# packages (postgresql, haproxy, prometheus): a PostgreSQL server, the first model and
# tokens, three `spamscope serve` replicas on it, HAProxy balancing them and Prometheus
# scraping each with the alert rules. Everything lives in one folder; nothing runs as a
# system service.
#
#   deploy/local.sh start [--dir DIR] [--port 8080] [--bin PATH] [--quick]
#   deploy/local.sh stop  [--dir DIR]
#
# start prints the addresses and the admin token; ports: PORT (HAProxy), PORT+1..+3
# (replicas), PORT+10 (Prometheus), PORT+11 (HAProxy's statistics), PORT+20 (PostgreSQL).
# --quick trains a small model (20 trees on 20,000 synthetic rows) instead of the default.
set -euo pipefail

cmd=${1:-}
shift || true
dir=${TMPDIR:-/tmp}/spamscope-local
port=8080
bin=""
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)

pg_bin() {
  if command -v pg_ctl >/dev/null 2>&1; then dirname "$(readlink -f "$(command -v pg_ctl)")"; return; fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop() {
  if [ -f "$dir/pids" ]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$dir/pids"
    rm -f "$dir/pids"
  fi
  if [ -d "$dir/pg/data" ]; then
    as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

wait_http() { # URL SECONDS
  for _ in $(seq 1 $(($2 * 5))); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "no answer from $1 within $2 s" >&2
  return 1
}

case "$cmd" in
  stop) stop; echo "stopped ($dir)"; exit 0 ;;
  start) ;;
  *) echo "usage: deploy/local.sh start|stop [--dir DIR] [--port PORT] [--bin PATH] [--quick]" >&2; exit 2 ;;
esac

if [ -z "$bin" ]; then
  bin=$(command -v spamscope || true)
  [ -n "$bin" ] || bin="$here/../target/release/spamscope"
fi
[ -x "$bin" ] || { echo "no spamscope binary at $bin (cargo build --release, or --bin)" >&2; exit 1; }
for tool in haproxy prometheus curl; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || {
    echo "$tool is missing: apt-get install postgresql haproxy prometheus curl" >&2; exit 1; }
done
haproxy_bin=$(command -v haproxy || echo /usr/sbin/haproxy)

stop
rm -rf "$dir"
mkdir -p "$dir/pg"
trap 'echo "start failed; see the logs in $dir" >&2; stop' ERR

# PostgreSQL in the folder (as the postgres user when root: the server refuses root).
if [ "$(id -u)" -eq 0 ]; then chown postgres "$dir/pg"; fi
pg_port=$((port + 20))
as_pg "$(pg_bin)/initdb" -D "$dir/pg/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" -w \
  -o "-p $pg_port -k $dir/pg -c listen_addresses=127.0.0.1" start >/dev/null
"$(pg_bin)/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -qc "CREATE DATABASE spamscope"
export SPAMSCOPE_STORE="postgres://postgres@127.0.0.1:$pg_port/spamscope"
unset SPAMSCOPE_HOME

# The first model and tokens (the compose file's init service).
if [ "$quick" = 1 ]; then
  "$bin" gen-data --out "$dir/train.csv" --rows 20000 2>/dev/null
  "$bin" train --data "$dir/train.csv" --trees 20 --cache "$dir/cache-init" >/dev/null 2>"$dir/train.log"
else
  "$bin" train --data synthetic --cache "$dir/cache-init" >/dev/null 2>"$dir/train.log"
fi
admin=$("$bin" token add --name ops --role admin --cache "$dir/cache-init" 2>/dev/null)
"$bin" token add --name prometheus --role scorer --cache "$dir/cache-init" > "$dir/scrape-token" 2>/dev/null
echo "$admin" > "$dir/admin-token"
chmod 600 "$dir/admin-token" "$dir/scrape-token"

# Three replicas.
for i in 1 2 3; do
  "$bin" serve --addr "127.0.0.1:$((port + i))" --cache "$dir/cache-$i" --wait-for-store 60 \
    > "$dir/api-$i.log" 2>&1 &
  echo $! >> "$dir/pids"
done

# HAProxy in front of them.
cat > "$dir/haproxy.cfg" <<EOF
global
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  option http-server-close
frontend spamscope
  bind 127.0.0.1:$port
  default_backend replicas
backend replicas
  balance roundrobin
  option httpchk GET /health/ready
  server api-1 127.0.0.1:$((port + 1)) check inter 1s
  server api-2 127.0.0.1:$((port + 2)) check inter 1s
  server api-3 127.0.0.1:$((port + 3)) check inter 1s
listen stats
  bind 127.0.0.1:$((port + 11))
  stats enable
  stats uri /stats
EOF
"$haproxy_bin" -db -f "$dir/haproxy.cfg" > "$dir/haproxy.log" 2>&1 &
echo $! >> "$dir/pids"

# Prometheus scraping each replica every second, with the rules of deploy/prometheus.
mkdir -p "$dir/prometheus"
cp "$here/prometheus/rules.yml" "$dir/prometheus/rules.yml"
sed -e "s|scrape_interval: 15s|scrape_interval: 1s|" \
    -e "s|evaluation_interval: 30s|evaluation_interval: 1s|" \
    -e "s|/run/scrape/token|$dir/scrape-token|" \
    -e "s|\"api-1:8080\", \"api-2:8080\", \"api-3:8080\"|\"127.0.0.1:$((port + 1))\", \"127.0.0.1:$((port + 2))\", \"127.0.0.1:$((port + 3))\"|" \
    "$here/prometheus/prometheus.yml" > "$dir/prometheus/prometheus.yml"
prometheus --config.file="$dir/prometheus/prometheus.yml" \
  --storage.tsdb.path="$dir/prometheus/data" \
  --web.listen-address="127.0.0.1:$((port + 10))" > "$dir/prometheus.log" 2>&1 &
echo $! >> "$dir/pids"

for i in 1 2 3; do wait_http "http://127.0.0.1:$((port + i))/health/ready" 60; done
wait_http "http://127.0.0.1:$port/health" 20
# HAProxy sends to a replica once its checks passed: wait until all three are in.
for _ in $(seq 1 100); do
  up=$(curl -fsS "http://127.0.0.1:$((port + 11))/stats;csv" 2>/dev/null | grep -c '^replicas,api-[0-9],.*,UP,' || true)
  [ "$up" = 3 ] && break
  sleep 0.2
done
[ "$up" = 3 ] || { echo "HAProxy sees $up of 3 replicas up" >&2; false; }
wait_http "http://127.0.0.1:$((port + 10))/-/ready" 30
trap - ERR
cat <<EOF
spamscope runs from $dir:
  service (HAProxy):  http://127.0.0.1:$port   (replicas on $((port + 1))-$((port + 3)))
  Prometheus:         http://127.0.0.1:$((port + 10))
  HAProxy statistics: http://127.0.0.1:$((port + 11))/stats
  PostgreSQL:         $SPAMSCOPE_STORE
  admin token:        $admin
stop it with: deploy/local.sh stop --dir $dir
EOF
