#!/usr/bin/env bash
# Load test of `spamscope serve` against a peer written like the reference service
# (fastapi_peer.py: FastAPI + uvicorn + scikit-learn's 300-tree forest), on the same
# data, forest parameters and 200 accounts, both driven by wrk from 127.0.0.1 in one run:
# 16 and 64 connections, explanations off and on, then a soak of spamscope with its
# resident memory sampled. A benchmark, not a test: the figures go to the closing note
# and docs/benchmarks.md as ratios against the peer measured in the same run.
#
# Usage: benches/serve_load.sh [OUT_DIR]
# Environment: DURATION (wrk seconds per run, default 20), SOAK (seconds, default 300),
#              CONNS (default "16 64"), ROWS (training rows, default: the synthetic default).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/serve-bench}
duration=${DURATION:-20}
soak=${SOAK:-300}
conns=${CONNS:-16 64}
mkdir -p "$out"
out=$(cd "$out" && pwd)
log() { echo "[serve_load] $*" >&2; }

if ! command -v wrk >/dev/null; then
  log "installing wrk (Debian package)"
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq wrk >/dev/null; else sudo apt-get install -y -qq wrk >/dev/null; fi
fi
log "building spamscope (release, headless)"
(cd "$root" && cargo build --release --no-default-features --quiet)
bin=$root/target/release/spamscope
venv=$out/venv
# Its per-peer lines (stdout) are for `spamscope bench`; only the base is needed here.
"$root/benches/make_venv.sh" "$venv" >&2
"$venv/bin/python" -c 'import fastapi, uvicorn' 2>/dev/null ||
  "$venv/bin/pip" install --quiet fastapi 'uvicorn[standard]'

data=$out/data.csv
if [ ! -s "$data" ]; then
  log "writing the synthetic data"
  if [ -n "${ROWS:-}" ]; then "$bin" gen-data --out "$data" --rows "$ROWS"; else "$bin" gen-data --out "$data"; fi
fi
reg=$out/registry
if [ ! -f "$reg/ACTIVE" ]; then
  log "training spamscope's forest (300 trees, depth 20)"
  "$bin" train --data "$data" --registry "$reg" >"$out/train.txt"
fi
# 200 accounts of the data (spammers and not), one JSON body per line.
"$venv/bin/python" - "$data" "$out/bodies.jsonl" <<'PY'
import json, sys
import pandas as pd
df = pd.read_csv(sys.argv[1])
rows = pd.concat([df[df.label == 1].head(40), df[df.label == 0].head(160)])
with open(sys.argv[2], "w") as f:
    for _, r in rows.iterrows():
        feats = {f"X{i}": float(r[f"X{i}"]) for i in range(1, 52) if pd.notna(r[f"X{i}"])}
        f.write(json.dumps({"features": feats}) + "\n")
PY

cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; }
pids=()
trap cleanup EXIT

wait_for() { # URL
  for _ in $(seq 1 600); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.5; done
  log "no answer from $1"; return 1
}

warm_up() { # URL: 5 s of load, not reported (first page faults, caches, connections)
  wrk -t2 -c16 -d5s --timeout 10s -s "$root/benches/wrk_bodies.lua" "$1" \
    -- "$out/bodies.jsonl" /predict >/dev/null
}

results=$out/results.jsonl
: >"$results"
run() { # NAME CONNS URL PATH [FEEDBACK_SHARE]
  local name=$1 c=$2 url=$3 path=$4 share=${5:-0}
  log "$name, $c connections, ${duration}s"
  local line
  line=$(wrk -t2 -c"$c" -d"${duration}s" --timeout 10s -s "$root/benches/wrk_bodies.lua" "$url" \
    -- "$out/bodies.jsonl" "$path" "$share" | tail -1)
  echo "{\"name\": \"$name\", \"connections\": $c, \"result\": $line}" >>"$results"
  echo "$line" >&2
}

# spamscope serve.
"$bin" serve --registry "$reg" --addr 127.0.0.1:18080 --log info 2>"$out/serve.log" &
pids+=($!)
serve_pid=$!
wait_for http://127.0.0.1:18080/health
curl -fs http://127.0.0.1:18080/model/info >"$out/model_info.json"
warm_up http://127.0.0.1:18080
for c in $conns; do
  run "spamscope, no explanation" "$c" http://127.0.0.1:18080 "/predict?explain=none"
  run "spamscope, top 3 reasons" "$c" http://127.0.0.1:18080 "/predict"
done
run "spamscope, top 3 + 5% feedback" 16 http://127.0.0.1:18080 "/predict" 0.05

# The peer.
if [ ! -f "$out/peer/peer.pkl" ]; then
  log "training the peer's forest (scikit-learn, 300 trees, depth 20)"
  "$venv/bin/python" "$root/benches/fastapi_peer.py" train "$data" "$out/peer" "$out/model_info.json"
fi
kill -STOP "$serve_pid"   # the peer runs alone
for jobs in 1 -1; do
  env PEER_DIR="$out/peer" PEER_N_JOBS=$jobs "$venv/bin/python" -m uvicorn --app-dir "$root/benches" \
    fastapi_peer:app --host 127.0.0.1 --port 18081 --log-level warning 2>"$out/peer.log" &
  peer_pid=$!
  pids+=($peer_pid)
  wait_for http://127.0.0.1:18081/health
  warm_up http://127.0.0.1:18081
  for c in $conns; do
    run "FastAPI peer, n_jobs=$jobs" "$c" http://127.0.0.1:18081 "/predict"
  done
  kill "$peer_pid" 2>/dev/null || true; wait "$peer_pid" 2>/dev/null || true
  # The port must be free before the next peer starts.
  for _ in $(seq 1 100); do curl -fs http://127.0.0.1:18081/health >/dev/null 2>&1 || break; sleep 0.2; done
done
kill -CONT "$serve_pid"

# Soak: resident memory of spamscope every 10 s under load.
log "soak: ${soak}s at 16 connections"
mem=$out/soak_rss.txt
: >"$mem"
( for _ in $(seq 1 $((soak / 10))); do
    sleep 10; echo "$(date +%s) $(ps -o rss= -p "$serve_pid")" >>"$mem"
  done ) &
sampler=$!
soak_line=$(wrk -t2 -c16 -d"${soak}s" --timeout 10s -s "$root/benches/wrk_bodies.lua" \
  http://127.0.0.1:18080 -- "$out/bodies.jsonl" /predict 0 | tail -1)
wait "$sampler" || true
echo "{\"name\": \"spamscope soak (top 3)\", \"connections\": 16, \"result\": $soak_line}" >>"$results"
curl -fs http://127.0.0.1:18080/metrics | grep -E '^spamscope_predictions_dropped_total' >"$out/dropped.txt" || true
kill -TERM "$serve_pid"; wait "$serve_pid" 2>/dev/null || true
# The closing summary: every prediction answered was logged (or counted as dropped).
grep -E 'requests in .* predictions logged' "$out/serve.log" | tail -1 >>"$out/dropped.txt" || true
"$venv/bin/python" "$root/benches/serve_report.py" "$results" "$mem" "$out" | tee "$out/report.md"
