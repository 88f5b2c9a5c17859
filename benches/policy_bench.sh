#!/usr/bin/env bash
# The decision policies' two speed figures, from one run on the same machine:
#   1. the backtest: the 20-rule benches/policy20.ron over the 458,798 synthetic default
#      accounts against the example live policy (assets/policy.ron), with a default
#      forest's probabilities: the seconds the policy takes (target: under 2 s), best and
#      worst of three;
#   2. the service: `spamscope serve` requests/s on /predict (top 3 reasons) with the
#      50-rule benches/policy50.ron live, against the same service and registry without a
#      policy (target: at least 0.9x), wrk from 127.0.0.1, the two alternated ROUNDS times.
# A benchmark, not a test: the figures go to the README and the closing note.
#
# Usage: benches/policy_bench.sh [OUT_DIR]
# Environment: DURATION (wrk seconds per run, default 20), CONNS (default 64),
#              ROUNDS (default 2).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/policy-bench}
duration=${DURATION:-20}
conns=${CONNS:-64}
rounds=${ROUNDS:-2}
mkdir -p "$out"
out=$(cd "$out" && pwd)
log() { echo "[policy_bench] $*" >&2; }

command -v wrk >/dev/null || {
  log "installing wrk (Debian package)"
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq wrk >/dev/null; else sudo apt-get install -y -qq wrk >/dev/null; fi
}
log "building spamscope (release, headless)"
(cd "$root" && cargo build --release --no-default-features --quiet)
bin=$root/target/release/spamscope
data=$out/data.csv
[ -s "$data" ] || "$bin" gen-data --out "$data" >/dev/null
reg=$out/registry
if [ ! -f "$reg/ACTIVE" ]; then
  log "training the default forest"
  "$bin" train --data "$data" --registry "$reg" --json >/dev/null
fi

# 1. The backtest.
report=$out/report.txt
: >"$report"
for run in 1 2 3; do
  "$bin" policy test "$root/benches/policy20.ron" --data "$data" --registry "$reg" \
    --live "$root/assets/policy.ron" --json 2>/dev/null |
    python3 -c '
import json, sys
t = json.load(sys.stdin)
print("backtest run %s: %d accounts, %d rules: policy %.3f s (scoring beforehand %.1f s)" % (
    sys.argv[1], t["accounts"], len(t["rules"]), t["policy_seconds"], t["scoring_seconds"]))
' "$run" | tee -a "$report" >&2
done

# 2. The service, without and with the 50-rule policy: two copies of the registry.
plain=$out/plain
decided=$out/decided
rm -rf "$plain" "$decided"
cp -r "$reg" "$plain"
cp -r "$reg" "$decided"
"$bin" policy publish "$root/benches/policy50.ron" --registry "$decided" --by bench >/dev/null
# 200 accounts of the data (40 spammers), one JSON body per line.
python3 - "$data" "$out/bodies.jsonl" <<'PY'
import csv, json, sys
spam, legit = [], []
with open(sys.argv[1]) as f:
    for r in csv.DictReader(f):
        (spam if r["label"] == "1" else legit).append(r)
        if len(spam) >= 40 and len(legit) >= 160:
            break
with open(sys.argv[2], "w") as f:
    for r in spam[:40] + legit[:160]:
        feats = {f"X{i}": float(r[f"X{i}"]) for i in range(1, 52) if r[f"X{i}"] != ""}
        f.write(json.dumps({"features": feats, "user_id": r["user_id"]}) + "\n")
PY

pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; }
trap cleanup EXIT
serve() { # REGISTRY: starts the service on 18090, waits for it
  "$bin" serve --registry "$1" --addr 127.0.0.1:18090 --log warn 2>>"$out/serve.log" &
  pid=$!
  for _ in $(seq 1 600); do curl -fs http://127.0.0.1:18090/health >/dev/null 2>&1 && return 0; sleep 0.5; done
  log "the service did not start"; return 1
}
stop() {
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=
}
load() { # SECONDS: wrk on /predict, prints requests/s
  wrk -t2 -c"$conns" -d"${1}s" --timeout 10s -s "$root/benches/wrk_bodies.lua" \
    http://127.0.0.1:18090 -- "$out/bodies.jsonl" /predict | tail -1 |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["rps"])'
}
for round in $(seq 1 "$rounds"); do
  for arm in plain decided; do
    serve "$out/$arm"
    # Every answer of the decided arm carries the policy (checked once per run).
    answer=$(curl -fs -X POST -H 'content-type: application/json' \
      --data-binary @<(head -1 "$out/bodies.jsonl") http://127.0.0.1:18090/predict)
    version=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["policy_version"])' "$answer")
    if [ "$arm" = decided ] && [ "$version" != 1 ]; then log "no policy on the decided arm"; exit 1; fi
    load 5 >/dev/null # warm-up, not reported
    rps=$(load "$duration")
    echo "service round $round, $arm (policy: $version): $rps requests/s" | tee -a "$report" >&2
    stop
  done
done
python3 - "$report" <<'PY' | tee -a "$report"
import re, sys
text = open(sys.argv[1]).read()
policy = [float(x) for x in re.findall(r"policy ([0-9.]+) s", text)]
plain = [float(x) for x in re.findall(r"plain \(policy: None\): ([0-9.]+)", text)]
decided = [float(x) for x in re.findall(r"decided \(policy: 1\): ([0-9.]+)", text)]
print("backtest: %d accounts, 20 rules: %.3f-%.3f s" % (458798, min(policy), max(policy)))
print("service: %.0f requests/s without a policy, %.0f with 50 rules: %.2fx (rounds: %s)" % (
    sum(plain) / len(plain), sum(decided) / len(decided),
    sum(decided) / sum(plain),
    ", ".join("%.2fx" % (d / p) for p, d in zip(plain, decided))))
PY
