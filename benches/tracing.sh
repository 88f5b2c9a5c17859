#!/usr/bin/env bash
# The cost of tracing: `spamscope serve` (release, headless) with OTLP tracing off and
# on, alternated in one run (off, on, off, on: DURATION seconds of wrk each after a
# warm-up), on the same 200 accounts with the default three reasons, 16 connections,
# every request traced and exported to a local OTLP/HTTP receiver (a Python sink that
# accepts and counts the batches). Prints requests/s of each round and the ratio
# on/off of the medians; the target is at least 0.9.
#
# Usage: benches/tracing.sh [OUT_DIR]   Environment: DURATION (default 20), ROWS
# (training rows, default 100000), TREES (default 300).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/tracing-bench}
duration=${DURATION:-20}
rows=${ROWS:-100000}
trees=${TREES:-300}
mkdir -p "$out"
out=$(cd "$out" && pwd)
log() { echo "[tracing] $*" >&2; }

command -v wrk >/dev/null || { log "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
log "building spamscope (release, headless)"
(cd "$root" && cargo build --release --no-default-features --quiet)
bin=$root/target/release/spamscope

reg=$out/registry
if [ ! -f "$reg/ACTIVE" ]; then
  log "training $trees trees on $rows rows"
  "$bin" gen-data --out "$out/data.csv" --rows "$rows" 2>/dev/null
  "$bin" train --data "$out/data.csv" --trees "$trees" --registry "$reg" >/dev/null 2>&1
fi
python3 - "$out/data.csv" "$out/bodies.jsonl" <<'PY'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
spam = [r for r in rows if r["label"] == "1"][:40]
legit = [r for r in rows if r["label"] == "0"][:160]
with open(sys.argv[2], "w") as f:
    for r in spam + legit:
        feats = {f"X{i}": float(r[f"X{i}"]) for i in range(1, 52) if r[f"X{i}"] not in ("", "nan")}
        f.write(json.dumps({"features": feats}) + "\n")
PY

pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The OTLP receiver: accepts every POST to /v1/traces, counts batches and bytes.
sink_port=$(free_port)
python3 - "$sink_port" "$out/sink.txt" <<'PY' &
import http.server, sys, threading
port, report = int(sys.argv[1]), sys.argv[2]
count = {"batches": 0, "bytes": 0}
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get("content-length", 0))
        self.rfile.read(n)
        with lock:
            count["batches"] += 1; count["bytes"] += n
            open(report, "w").write(f"{count['batches']} batches, {count['bytes']} bytes\n")
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
pids+=($!)

round() { # NAME TRACING(0|1)
  local port; port=$(free_port)
  if [ "$2" = 1 ]; then
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sink_port OTEL_SERVICE_NAME=bench \
      "$bin" serve --registry "$reg" --addr "127.0.0.1:$port" 2>"$out/serve-$1.log" &
  else
    env -u OTEL_EXPORTER_OTLP_ENDPOINT "$bin" serve --registry "$reg" --addr "127.0.0.1:$port" 2>"$out/serve-$1.log" &
  fi
  local pid=$!
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$port/health" 2>/dev/null && break; sleep 0.1; done
  wrk -t2 -c16 -d3s -s "$root/benches/wrk_bodies.lua" "http://127.0.0.1:$port" -- "$out/bodies.jsonl" /predict >/dev/null
  wrk -t2 -c16 -d"${duration}s" -s "$root/benches/wrk_bodies.lua" "http://127.0.0.1:$port" -- "$out/bodies.jsonl" /predict \
    | tail -1 > "$out/$1.json"
  if [ "$2" = 1 ]; then
    curl -fsS "http://127.0.0.1:$port/metrics" | grep '^spamscope_traces_spans_total' > "$out/$1.spans" || true
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
  log "$1: $(cat "$out/$1.json")"
}
round off-1 0
round on-1 1
round off-2 0
round on-2 1

python3 - "$out" <<'PY'
import json, statistics, sys, os
d = sys.argv[1]
r = {n: json.load(open(os.path.join(d, n + ".json"))) for n in ["off-1", "on-1", "off-2", "on-2"]}
off = statistics.median([r["off-1"]["rps"], r["off-2"]["rps"]])
on = statistics.median([r["on-1"]["rps"], r["on-2"]["rps"]])
for n, v in r.items():
    print(f"{n}: {v['rps']:.0f} req/s, p99 {v['p99_ms']:.2f} ms, errors {sum(v['errors'].values())}")
for n in ["on-1", "on-2"]:
    print(n, "spans:", open(os.path.join(d, n + ".spans")).read().replace("\n", "; "))
print("sink:", open(os.path.join(d, "sink.txt")).read().strip())
print(f"tracing on / off: {on / off:.3f} (target >= 0.9)")
PY
