#!/usr/bin/env bash
# The service as replicas on one PostgreSQL (issue 22), measured in one run on this
# machine, database included:
#   1. scoring: a PostgreSQL-backed replica against the folder-backed service, same
#      model (trained twice with one seed), same 200 accounts, wrk at 16 connections,
#      alternating twice; the ratio of requests/s (target: at least 0.9);
#   2. feedback: acknowledged records/s on one replica at 16 connections, every request
#      a labelled account, synchronous_commit on (the server's default);
#   3. promotion: 20 rollbacks made by the CLI on the database, alternating two
#      versions, each timed until all three replicas answer with it (p50, p99, max);
#   4. three replicas, requests spread round-robin (replicas_mixed.py), while the CLI
#      changes the active version every second: errors, and answers whose probability
#      is not the one the version they name gives that account.
# A benchmark, not a test: the figures go to docs/benchmarks.md and the README.
#
# Usage: benches/replicas.sh [OUT_DIR]      Environment: DURATION (wrk seconds, default 20),
#        ROWS (training rows, default 100000)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/replicas-bench}
duration=${DURATION:-20}
rows=${ROWS:-100000}
mkdir -p "$out"
out=$(cd "$out" && pwd)
log() { echo "[replicas] $*" >&2; }

command -v wrk >/dev/null || { log "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
log "building spamscope (release, headless)"
(cd "$root" && cargo build --release --no-default-features --quiet)
bin=$root/target/release/spamscope

pids=()
pgdir=$out/pg
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done
  as_pg "$pgbin/pg_ctl" -D "$pgdir/data" -m fast -w stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
rm -rf "$pgdir"; mkdir -p "$pgdir"
[ "$(id -u)" = 0 ] && chown postgres "$pgdir"
as_pg "$pgbin/initdb" -D "$pgdir/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
as_pg "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w \
  -o "-p $port -k $pgdir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
"$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE spamscope"
url="postgres://postgres@127.0.0.1:$port/spamscope"
log "PostgreSQL on port $port ($(as_pg "$pgbin/postgres" --version)); synchronous_commit: $("$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -Atc 'show synchronous_commit')"

data=$out/data.csv
[ -s "$data" ] || "$bin" gen-data --out "$data" --rows "$rows"
reg=$out/registry
rm -rf "$reg" "$out"/cache*
log "training the same forest twice: into a folder and into the database"
"$bin" train --data "$data" --registry "$reg" >/dev/null
"$bin" --store "$url" --cache "$out/cache0" train --data "$data" >/dev/null
"$bin" --store "$url" --cache "$out/cache0" train --data "$data" --trees 100 >/dev/null
python3 - "$data" "$out/bodies.jsonl" <<'PY'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
pick = [r for r in rows if r["label"] == "1"][:40] + [r for r in rows if r["label"] == "0"][:160]
with open(sys.argv[2], "w") as f:
    for r in pick:
        feats = {f"X{i}": float(r[f"X{i}"]) for i in range(1, 52) if r[f"X{i}"] not in ("", "nan", "NaN")}
        f.write(json.dumps({"features": feats}) + "\n")
PY

wait_for() { for _ in $(seq 1 600); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; log "no answer from $1"; return 1; }
wrk_rps() { # URL PATH SHARE -> the JSON line
  wrk -t2 -c16 -d"${duration}s" --timeout 10s -s "$root/benches/wrk_bodies.lua" "$1" \
    -- "$out/bodies.jsonl" "$2" "$3" | tail -1
}

"$bin" serve --registry "$reg" --addr 127.0.0.1:18180 --log warn 2>"$out/folder.log" & pids+=($!)
for i in 1 2 3; do
  "$bin" serve --store "$url" --cache "$out/cache$i" --addr 127.0.0.1:1818$i --log warn 2>"$out/replica$i.log" & pids+=($!)
done
for p in 18180 18181 18182 18183; do wait_for "http://127.0.0.1:$p/health"; done
# Both on the 300-tree version (the database's active one is the 100-tree v2 now).
"$bin" --store "$url" --cache "$out/cache0" rollback --to 1 >/dev/null
sleep 1

results=$out/results.jsonl; : >"$results"
for p in 18180 18181; do wrk -t2 -c16 -d5s -s "$root/benches/wrk_bodies.lua" "http://127.0.0.1:$p" -- "$out/bodies.jsonl" "/predict?explain=none" 0 >/dev/null; done
for round in 1 2; do
  for p in 18180 18181; do
    name=$([ $p = 18180 ] && echo folder || echo postgres)
    line=$(wrk_rps "http://127.0.0.1:$p" "/predict?explain=none" 0)
    log "scoring, $name, round $round: $line"
    echo "{\"name\": \"scoring $name\", \"round\": $round, \"result\": $line}" >>"$results"
  done
done
line=$(wrk_rps http://127.0.0.1:18181 /feedback 1)
log "feedback, postgres: $line"
echo "{\"name\": \"feedback postgres\", \"result\": $line}" >>"$results"
stored=$("$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -d spamscope -Atc "SELECT count(*) FROM feedback")
log "feedback records stored: $stored"

sleep 1
sizes=$("$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -d spamscope -Atc "
  SELECT count(*), (SELECT sum(pg_total_relation_size(c.oid)) FROM pg_inherits i
                    JOIN pg_class c ON c.oid = i.inhrelid
                    JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'predictions')
  FROM predictions")
log "prediction log: rows|bytes = $sizes"
echo "$sizes" >"$out/log_size.txt"

log "20 promotions, each timed until all three replicas answer with it"
: >"$out/promotions.txt"
for i in $(seq 1 20); do
  to=$(( i % 2 == 1 ? 2 : 1 ))
  "$bin" --store "$url" --cache "$out/cache0" rollback --to $to >/dev/null
  start=$(date +%s.%N)
  for p in 18181 18182 18183; do
    until curl -fs "http://127.0.0.1:$p/health" | grep -q "\"model_version\":$to[,}]"; do sleep 0.002; done
  done
  echo "$(echo "$(date +%s.%N) - $start" | bc)" >>"$out/promotions.txt"
done
log "three replicas, round-robin, under load while the active version changes every second"
mixed=$(python3 "$root/benches/replicas_mixed.py" "$bin" "$url" "$out/cache0" "$out/bodies.jsonl" 18181 18182 18183 --seconds "$duration")
log "mixed: $mixed"
echo "$mixed" >"$out/mixed.json"

python3 - "$results" "$out/promotions.txt" "$stored" "$(cat "$out/log_size.txt")" <<'PY' | tee "$out/summary.txt"
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
def rps(name): return [r["result"]["rps"] for r in rs if r["name"] == name]
f, p = rps("scoring folder"), rps("scoring postgres")
fb = [r["result"] for r in rs if r["name"] == "feedback postgres"][0]
times = sorted(float(x) for x in open(sys.argv[2]))
q = lambda a, x: a[min(len(a) - 1, int(round(x * (len(a) - 1))))]
print(f"scoring, folder service:   {', '.join(f'{x:,.0f}' for x in f)} req/s")
print(f"scoring, postgres replica: {', '.join(f'{x:,.0f}' for x in p)} req/s")
print(f"ratio postgres / folder:   {sum(p) / sum(f):.3f}")
print(f"feedback, one replica, 16 connections: {fb['rps']:,.0f} acknowledged/s "
      f"(p99 {fb['p99_ms']:.1f} ms, non-2xx {fb['errors']['status']}, stored {sys.argv[3]})")
print(f"promotion to all 3 replicas over {len(times)}: p50 {q(times, .5) * 1e3:.0f} ms, "
      f"p99 {q(times, .99) * 1e3:.0f} ms, max {times[-1] * 1e3:.0f} ms")
m = json.load(open(sys.argv[1].rsplit("/", 1)[0] + "/mixed.json"))
print(f"3 replicas round-robin, {m['seconds']} s, {m['promotions']} promotions: {m['requests']:,} requests, "
      f"{m['non_200']} not 200, {m['mismatched']} probabilities not of the version named "
      f"(answered by version: {m['by_version']})")
n, size = (int(x) for x in sys.argv[4].split("|"))
per = size / n
print(f"prediction log: {n:,} rows in {size / 2**20:,.0f} MiB = {per:,.0f} bytes a row with its indexes; "
      f"a day at 458,798 predictions (the seed, each account once): {per * 458_798 / 2**30:.2f} GiB; "
      f"at 100x: {per * 45_879_800 / 2**30:.1f} GiB")
PY
