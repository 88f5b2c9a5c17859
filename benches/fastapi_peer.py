"""The load test's peer: a scoring service written like the reference system's
(FastAPI + uvicorn + scikit-learn's 300-tree forest; per request a scaler, predict and
predict_proba under a lock, and rule-based risk factors), on the same data and forest
parameters as spamscope's default version.

Train:  python fastapi_peer.py train DATA.csv OUT_DIR MAPPING.json
        (MAPPING.json: spamscope's GET /model/info, for the feature mapping)
Serve:  PEER_DIR=OUT_DIR PEER_N_JOBS=1 uvicorn fastapi_peer:app --port 8001
"""
import json
import os
import pickle
import sys
import threading
from typing import Dict, List, Optional

FEATURES = [f"X{i}" for i in range(1, 52)]


def train(data_path, out_dir, mapping_path):
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    df = pd.read_csv(data_path)
    # The same holdout fraction and seed as `spamscope train` (rows differ: another RNG).
    train_df, _ = train_test_split(df, test_size=0.2, stratify=df["label"], random_state=42)
    imputer = SimpleImputer(strategy="median").fit(train_df[FEATURES])
    x = imputer.transform(train_df[FEATURES])
    scaler = StandardScaler().fit(x)
    model = RandomForestClassifier(
        n_estimators=300, max_depth=20, min_samples_split=5,
        class_weight="balanced", random_state=42, n_jobs=-1,
    ).fit(scaler.transform(x), train_df["label"].to_numpy())
    info = json.load(open(mapping_path))
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "peer.pkl"), "wb") as f:
        pickle.dump({"model": model, "scaler": scaler, "imputer": imputer,
                     "feature_mapping": info["feature_mapping"]}, f)


if len(sys.argv) > 1 and sys.argv[1] == "train":
    train(*sys.argv[2:5])
    sys.exit(0)

import numpy as np  # noqa: E402
from fastapi import FastAPI, HTTPException  # noqa: E402
from pydantic import BaseModel  # noqa: E402

with open(os.path.join(os.environ["PEER_DIR"], "peer.pkl"), "rb") as f:
    _a = pickle.load(f)
model, scaler, imputer, feature_mapping = _a["model"], _a["scaler"], _a["imputer"], _a["feature_mapping"]
# The reference trains with n_jobs=-1 and keeps it when predicting; 1 is faster per row.
model.set_params(n_jobs=int(os.environ.get("PEER_N_JOBS", "1")))
model_lock = threading.Lock()
app = FastAPI(title="reference-like peer")


class PredictionRequest(BaseModel):
    features: Dict[str, Optional[float]]


class PredictionResponse(BaseModel):
    prediction: int
    probability: float
    is_spammer: bool
    risk_factors: List[Dict[str, str]]


def identify_risk_factors(features, mapping):
    # The reference's rules: flags set to 1, and a few numeric thresholds.
    thresholds = {"X19": 5, "X8": 10, "X16": 15, "X18": 8}
    out = []
    for name, value in features.items():
        info = mapping.get(name)
        if info is None or value is None:
            continue
        hit = (info["type"] in ("categorical", "boolean") and value == 1) or (
            info["type"] == "numeric" and name in thresholds and value > thresholds[name])
        if hit:
            out.append({"feature": name, "description": info["description"],
                        "category": info["category"], "value": str(value),
                        "reason": f"Flagged for {info['description'].lower()}"})
    return out


@app.get("/health")
async def health():
    return {"status": "healthy"}


@app.post("/predict", response_model=PredictionResponse)
async def predict(request: PredictionRequest):
    try:
        row = np.array([[np.nan if request.features.get(f) is None else request.features[f]
                         for f in FEATURES]])
        x = scaler.transform(imputer.transform(row))
        with model_lock:
            prediction = model.predict(x)[0]
            probability = model.predict_proba(x)[0, 1]
        return {"prediction": int(prediction), "probability": float(probability),
                "is_spammer": bool(prediction),
                "risk_factors": identify_risk_factors(request.features, feature_mapping)}
    except Exception as e:  # as the reference: any failure is a 400
        raise HTTPException(status_code=400, detail=str(e))
