"""A policy backtest by brute force in pandas: the reference `spamscope policy test` is
checked against (tests/peers.rs).

Usage: python policy_pandas.py DATA.csv SCORED.csv RULES.json
  DATA.csv    the labelled accounts (label,user_id,X1..X51; empty cells missing)
  SCORED.csv  `spamscope score`'s output for them (user_id, probability, score, ...)
  RULES.json  {"outcomes": [...least to most severe], "rules": [{"name", "pandas",
              "outcome"}]}: each rule's condition as a pandas expression over the
              columns (DataFrame.eval), written by hand beside its CEL form.
Prints one JSON object: per rule hits, spammers_hit, labelled_hits; per outcome the
accounts decided so (the most severe matching rule; none: the first outcome).
"""
import json
import sys

import numpy as np
import pandas as pd


def main():
    data, scored, rules = sys.argv[1:4]
    d = pd.read_csv(data)
    s = pd.read_csv(scored)
    if len(d) != len(s) or not (d["user_id"].astype(str).values == s["user_id"].astype(str).values).all():
        raise SystemExit("the scored file is not the data's accounts in order")
    d["probability"] = s["probability"].values
    d["score"] = s["score"].values
    spec = json.load(open(rules))
    outcomes = spec["outcomes"]
    decision = np.zeros(len(d), dtype=int)
    out = {"rules": [], "outcomes": []}
    for r in spec["rules"]:
        hit = d.eval(r["pandas"]).fillna(False).astype(bool).values
        o = outcomes.index(r["outcome"])
        decision = np.where(hit & (o > decision), o, decision)
        out["rules"].append({
            "name": r["name"],
            "hits": int(hit.sum()),
            "spammers_hit": int((hit & (d["label"].values == 1)).sum()),
            "labelled_hits": int(hit.sum()),
        })
    for o, name in enumerate(outcomes):
        out["outcomes"].append({"outcome": name, "accounts": int((decision == o).sum())})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
