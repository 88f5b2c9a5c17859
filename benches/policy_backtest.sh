#!/usr/bin/env bash
# The policy backtest's speed on the default data: a 20-rule policy (benches/policy20.ron)
# over the 458,798 synthetic default accounts, against the example live policy, with the
# probabilities of a default forest trained on the same file. Prints the seconds the policy
# took (the rules of both policies, the decisions and every count; target: under 2 s) and,
# apart, the seconds scoring the accounts took (once per model version).
# Usage: benches/policy_backtest.sh [path/to/spamscope]   (default: target/release/spamscope)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/spamscope}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" gen-data --out "$work/data.csv" >/dev/null
"$bin" train --data "$work/data.csv" --registry "$work/registry" --json >/dev/null
for run in 1 2 3; do
  "$bin" policy test benches/policy20.ron --data "$work/data.csv" --registry "$work/registry" \
    --live assets/policy.ron --json 2>/dev/null |
    python3 -c '
import json, sys
t = json.load(sys.stdin)
print("run %s: %d accounts, %d rules: policy %.3f s (scoring %.1f s)" % (
    sys.argv[1], t["accounts"], len(t["rules"]), t["policy_seconds"], t["scoring_seconds"]))
' "$run"
done
