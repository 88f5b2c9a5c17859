"""Table of benches/serve_load.sh: requests/s, p50/p99 latency and errors for each run,
with spamscope's throughput as a multiple of the peer's (n_jobs=1, same connections),
and the soak's resident memory.

Usage: python serve_report.py RESULTS.jsonl SOAK_RSS.txt OUT_DIR
"""
import json
import os
import sys

results = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
peer = {r["connections"]: r["result"]["rps"] for r in results if r["name"] == "FastAPI peer, n_jobs=1"}
print("| run | connections | requests/s | p50 ms | p99 ms | errors | × peer (n_jobs=1) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for r in results:
    x = r["result"]
    errors = sum(x["errors"].values())
    base = peer.get(r["connections"])
    ratio = f"{x['rps'] / base:,.0f}×" if base and not r["name"].startswith("FastAPI") else ""
    print(f"| {r['name']} | {r['connections']} | {x['rps']:,.0f} | {x['p50_ms']:.2f} | "
          f"{x['p99_ms']:.2f} | {errors} | {ratio} |")
rss = [int(line.split()[1]) for line in open(sys.argv[2]) if len(line.split()) == 2]
if rss:
    first_min = rss[: max(1, len(rss) // 5)]
    last_min = rss[-max(1, len(rss) // 5):]
    a, b = sum(first_min) / len(first_min), sum(last_min) / len(last_min)
    print(f"\nSoak: resident memory of spamscope serve {len(rss)} samples, first fifth "
          f"{a / 1024:.1f} MiB, last fifth {b / 1024:.1f} MiB ({(b - a) / a * 100:+.1f}%), "
          f"max {max(rss) / 1024:.1f} MiB.")
dropped = os.path.join(sys.argv[3], "dropped.txt")
if os.path.exists(dropped):
    for line in open(dropped).read().splitlines():
        print(f"Prediction log: {line.strip()}")
