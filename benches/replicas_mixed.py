"""Three replicas under load while versions change: every request goes round-robin to
the next replica (the load balancer's work, done by the client), and the CLI makes
another version active every second. Counted: requests, non-200 answers, and answers
whose probability is not the one the version they name gives that account (each
account's probability under each version is asked for first, before the load).

Usage: python3 replicas_mixed.py BIN STORE_URL CACHE BODIES PORT... [--seconds 20]
Prints one JSON line.
"""
import http.client
import json
import subprocess
import sys
import threading
import time

args = sys.argv[1:]
seconds = 20
if "--seconds" in args:
    i = args.index("--seconds")
    seconds = int(args[i + 1])
    del args[i : i + 2]
bin_, url, cache, bodies_path, *ports = args
bodies = [line.strip() for line in open(bodies_path) if line.strip()]


def cli(*a):
    subprocess.run([bin_, "--store", url, "--cache", cache, *a], check=True,
                   stdout=subprocess.DEVNULL)


def post(conn, body):
    conn.request("POST", "/predict?explain=none", body, {"Content-Type": "application/json"})
    r = conn.getresponse()
    return r.status, json.loads(r.read() or b"null")


def version_of(port):
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
    c.request("GET", "/health")
    return json.loads(c.getresponse().read())["model_version"]


expected = {}
for v in (1, 2):
    cli("rollback", "--to", str(v))
    while any(version_of(p) != v for p in ports):
        time.sleep(0.01)
    c = http.client.HTTPConnection("127.0.0.1", int(ports[0]), timeout=10)
    for i, b in enumerate(bodies):
        status, r = post(c, b)
        assert status == 200 and r["model_version"] == v, (status, r)
        expected[(i, v)] = r["probability"]

stop = time.time() + seconds
counts = {"requests": 0, "non_200": 0, "mismatched": 0, "by_version": {}}
lock = threading.Lock()


def worker(k):
    conns = [http.client.HTTPConnection("127.0.0.1", int(p), timeout=10) for p in ports]
    n = k
    mine = {"requests": 0, "non_200": 0, "mismatched": 0, "by_version": {}}
    while time.time() < stop:
        i = n % len(bodies)
        c = conns[n % len(conns)]
        n += 1
        try:
            status, r = post(c, bodies[i])
        except Exception:
            status, r = 0, None
            conns[(n - 1) % len(conns)] = http.client.HTTPConnection(
                "127.0.0.1", int(ports[(n - 1) % len(ports)]), timeout=10)
        mine["requests"] += 1
        if status != 200:
            mine["non_200"] += 1
            continue
        v = r["model_version"]
        mine["by_version"][v] = mine["by_version"].get(v, 0) + 1
        if expected.get((i, v)) != r["probability"]:
            mine["mismatched"] += 1
    with lock:
        for key in ("requests", "non_200", "mismatched"):
            counts[key] += mine[key]
        for v, x in mine["by_version"].items():
            counts["by_version"][v] = counts["by_version"].get(v, 0) + x


threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
for t in threads:
    t.start()
promotions = 0
while time.time() < stop - 1:
    time.sleep(1)
    cli("rollback", "--to", str(1 + promotions % 2))
    promotions += 1
for t in threads:
    t.join()
counts["promotions"] = promotions
counts["seconds"] = seconds
print(json.dumps(counts))
