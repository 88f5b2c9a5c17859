"""scikit-learn peer for `spamscope bench`: the same model on the same split.

Usage: python sklearn_peer.py TRAIN.csv TEST.csv N_TREES [ALL.csv]
Prints one JSON object: fit/predict times, single-row latency, ROC-AUC, model size, and
with ALL.csv the time to score every account of it (predict_proba).
"""
import json
import pickle
import sys
import time

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

train_path, test_path, n_trees = sys.argv[1], sys.argv[2], int(sys.argv[3])
features = [f"X{i}" for i in range(1, 52)]
train = pd.read_csv(train_path)
test = pd.read_csv(test_path)

imputer = SimpleImputer(strategy="median").fit(train[features])
x_train = imputer.transform(train[features])
x_test = imputer.transform(test[features])

model = RandomForestClassifier(
    n_estimators=n_trees,
    max_depth=20,
    min_samples_split=5,
    class_weight="balanced",
    random_state=42,
    n_jobs=-1,
)
t = time.perf_counter()
model.fit(x_train, train["label"].to_numpy())
fit_seconds = time.perf_counter() - t

t = time.perf_counter()
proba = model.predict_proba(x_test)[:, 1]
predict_seconds = time.perf_counter() - t

score_all_seconds = None
score_all_rows = None
if len(sys.argv) > 4:
    everything = pd.read_csv(sys.argv[4])
    x_all = imputer.transform(everything[features])
    t = time.perf_counter()
    model.predict_proba(x_all)
    score_all_seconds = time.perf_counter() - t
    score_all_rows = len(x_all)

y_test = test["label"].to_numpy()
y_pred = (proba > 0.5).astype(int)

# Single-row latency: what a live gauge would pay per change.
model.set_params(n_jobs=1)
times = []
for i in range(30):
    t = time.perf_counter()
    model.predict_proba(x_test[i : i + 1])
    times.append(time.perf_counter() - t)

print(
    json.dumps(
        {
            "fit_seconds": fit_seconds,
            "predict_seconds": predict_seconds,
            "single_row_ms": float(np.median(times) * 1000),
            "roc_auc": float(roc_auc_score(y_test, proba)),
            "precision": float(precision_score(y_test, y_pred)),
            "recall": float(recall_score(y_test, y_pred)),
            "f1": float(f1_score(y_test, y_pred)),
            "model_bytes": len(pickle.dumps(model)),
            "score_all_seconds": score_all_seconds,
            "score_all_rows": score_all_rows,
            "score_all_rows_per_second": score_all_rows / score_all_seconds if score_all_seconds else None,
            "sklearn_version": __import__("sklearn").__version__,
        }
    )
)
