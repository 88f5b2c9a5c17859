"""Peers for `spamscope bench`: the same random forest, on the same split, in another
library. `spamscope bench` runs this script once per peer, each in its own process, so
that memory figures are separate and one peer crashing loses nothing of the others.

Usage:
  python peers.py --peer {sklearn,xgboost,ydf} --train TRAIN.csv --test TEST.csv
                  --trees N --threads T [--all ALL.csv] [--model-out PATH]
  python peers.py --peer shap --test TEST.csv --model-in SKLEARN.pickle [--accounts 3]

Prints one JSON object on stdout (the last line). Figures of a forest peer: fit and
batch-predict seconds, single-row latency (median of 30), ROC-AUC and precision/recall/F1
at 0.5 on the test set, peak memory of training, model size, version; with --all the
time to score every account of that file. Every peer gets the same median-imputed
columns as ours (the imputer is fitted on the training rows), so the libraries' own
missing-value handling does not differ between them.

Peak memory of training, measured as `spamscope bench` measures ours: on Linux, "5"
written to /proc/self/clear_refs resets the peak resident set (VmHWM) to the current
one just before fit; VmHWM read right after fit is `fit_peak_rss_bytes`, and that minus
VmRSS before fit is `fit_extra_rss_bytes` (what training itself needed). Where /proc is
not there (or the reset is refused) the figures are null.
"""
import argparse
import json
import math
import pickle
import sys
import time

FEATURES = [f"X{i}" for i in range(1, 52)]
SINGLE_ROWS = 30


def status_bytes(field):
    """A `kB` field of /proc/self/status in bytes, None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measured_fit(fit):
    """Runs fit(), returns (its result, seconds, memory figures)."""
    before = status_bytes("VmRSS")
    reset = reset_peak()
    t = time.perf_counter()
    model = fit()
    seconds = time.perf_counter() - t
    peak = status_bytes("VmHWM") if reset else None
    extra = peak - before if peak is not None and before is not None else None
    return model, seconds, {"fit_peak_rss_bytes": peak, "fit_extra_rss_bytes": extra}


def load(args):
    import pandas as pd
    from sklearn.impute import SimpleImputer

    train = pd.read_csv(args.train)
    test = pd.read_csv(args.test)
    imputer = SimpleImputer(strategy="median").fit(train[FEATURES])
    return (
        imputer,
        imputer.transform(train[FEATURES]),
        train["label"].to_numpy(),
        imputer.transform(test[FEATURES]),
        test["label"].to_numpy(),
    )


def quality(y_test, proba):
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    y_pred = (proba > 0.5).astype(int)
    return {
        "roc_auc": float(roc_auc_score(y_test, proba)),
        "precision": float(precision_score(y_test, y_pred, zero_division=0)),
        "recall": float(recall_score(y_test, y_pred, zero_division=0)),
        "f1": float(f1_score(y_test, y_pred, zero_division=0)),
    }


def median_ms(predict_one, rows):
    import numpy as np

    times = []
    for r in rows:
        t = time.perf_counter()
        predict_one(r)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def one_row_arrays(x):
    return [x[i : i + 1] for i in range(len(x))]


def balanced_weights(y):
    from sklearn.utils.class_weight import compute_sample_weight

    return compute_sample_weight("balanced", y)


def forest_peer(args, version, params, fit, predict, single_rows, single, size):
    """The figures every forest peer reports. fit(x, y) -> model; predict(model, x) ->
    P(spam) per row with all threads; single_rows(x) -> inputs of one row each, built
    before timing; single(model) -> a function predicting one such input on one thread;
    size(model) -> bytes or None."""
    imputer, x_train, y_train, x_test, y_test = load(args)
    model, fit_seconds, memory = measured_fit(lambda: fit(x_train, y_train))

    t = time.perf_counter()
    proba = predict(model, x_test)
    predict_seconds = time.perf_counter() - t

    out = {
        "version": version,
        "fit_seconds": fit_seconds,
        "predict_seconds": predict_seconds,
        **memory,
        **quality(y_test, proba),
    }
    if args.all:
        import pandas as pd

        x_all = imputer.transform(pd.read_csv(args.all)[FEATURES])
        t = time.perf_counter()
        predict(model, x_all)
        seconds = time.perf_counter() - t
        out["score_all_seconds"] = seconds
        out["score_all_rows"] = len(x_all)
        out["score_all_rows_per_second"] = len(x_all) / seconds if seconds > 0 else None
    # Single-row latency: what a live gauge would pay per change.
    out["single_row_ms"] = median_ms(single(model), single_rows(x_test[:SINGLE_ROWS]))
    out["model_bytes"] = size(model)
    if args.model_out:
        # For the shap peer, which explains this very forest (of imputed rows).
        with open(args.model_out, "wb") as f:
            pickle.dump((imputer, model), f)
    out["params"] = params
    return out


def run_sklearn(args):
    import sklearn
    from sklearn.ensemble import RandomForestClassifier

    params = dict(
        n_estimators=args.trees,
        max_depth=20,
        min_samples_split=5,
        class_weight="balanced",
        random_state=42,
        n_jobs=args.threads,
    )

    def fit(x, y):
        return RandomForestClassifier(**params).fit(x, y)

    def single(model):
        model.set_params(n_jobs=1)
        return model.predict_proba

    return forest_peer(
        args,
        sklearn.__version__,
        params,
        fit,
        lambda model, x: model.predict_proba(x)[:, 1],
        one_row_arrays,
        single,
        lambda model: len(pickle.dumps(model)),
    )


def run_xgboost(args):
    import xgboost as xgb

    # Random-forest mode: one boosting round of `trees` parallel trees (what
    # XGBRFClassifier does), learning rate 1. XGBoost samples rows without replacement,
    # so subsample=0.632 stands for the bootstrap (its expected share of distinct rows);
    # colsample_bynode is max_features=sqrt per split. There is no minimum split size: a
    # child needs a hessian sum of min_child_weight, set to half of one lightest sample's
    # (weight * p(1-p), p = 0.5 with balanced weights), i.e. min_samples_leaf = 1.
    params = dict(
        n_estimators=args.trees,
        max_depth=20,
        subsample=0.632,
        colsample_bynode=math.sqrt(len(FEATURES)) / len(FEATURES),
        tree_method="hist",
        max_bin=256,
        learning_rate=1.0,
        n_jobs=args.threads,
        random_state=42,
    )

    def fit(x, y):
        w = balanced_weights(y)
        model = xgb.XGBRFClassifier(**params, min_child_weight=0.125 * float(w.min()))
        params["min_child_weight"] = model.get_params()["min_child_weight"]
        return model.fit(x, y, sample_weight=w)

    def single(model):
        model.set_params(n_jobs=1)
        return model.predict_proba

    return forest_peer(
        args,
        xgb.__version__,
        params,
        fit,
        lambda model, x: model.predict_proba(x)[:, 1],
        one_row_arrays,
        single,
        lambda model: len(model.get_booster().save_raw("ubj")),
    )


def run_ydf(args):
    import numpy as np
    import ydf

    ydf.verbose(0)
    # max_depth counts the root as depth 1 in YDF (max_depth=1: stumps without a split),
    # so scikit-learn's and ours 20 is YDF's 21. min_examples is the minimum per child
    # (there is no minimum split size); 1 is min_samples_leaf = 1. The columns are
    # discretised into 256 bins like ours and XGBoost's hist. winner_take_all=False:
    # trees vote with their leaf distributions, as scikit-learn's and ours average.
    params = dict(
        label="label",
        task=ydf.Task.CLASSIFICATION,
        weights="weight",
        num_trees=args.trees,
        max_depth=21,
        min_examples=1,
        winner_take_all=False,
        compute_oob_performances=False,
        discretize_numerical_columns=True,
        num_discretized_numerical_bins=256,
        num_threads=args.threads,
        random_seed=42,
    )

    def columns(x):
        return {f: x[:, j] for j, f in enumerate(FEATURES)}

    def fit(x, y):
        data = columns(x)
        data["label"] = y
        data["weight"] = balanced_weights(y)
        return ydf.RandomForestLearner(**params).train(data)

    def predict(model, x):
        p = np.asarray(model.predict(columns(x)))
        # Binary classification: the probability of the second of label_classes().
        classes = [str(c) for c in model.label_classes()]
        return p if classes[1] == "1" else 1.0 - p

    def single_rows(x):
        return [columns(x[i : i + 1]) for i in range(len(x))]

    def single(model):
        return model.predict

    def size(model):
        try:
            return len(model.serialize())
        except Exception:  # an older ydf: not cheap to get, not reported
            return None

    shown = {k: (v.name if hasattr(v, "name") else v) for k, v in params.items()}
    return forest_peer(args, ydf.__version__, shown, fit, predict, single_rows, single, size)


def run_shap(args):
    import numpy as np
    import pandas as pd
    import shap

    if not args.model_in:
        raise SystemExit("the shap peer needs --model-in (the scikit-learn forest)")
    with open(args.model_in, "rb") as f:
        imputer, model = pickle.load(f)
    x = imputer.transform(pd.read_csv(args.test, nrows=args.accounts)[FEATURES])
    t = time.perf_counter()
    explainer = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")
    init_seconds = time.perf_counter() - t
    times = []
    for i in range(len(x)):
        t = time.perf_counter()
        explainer.shap_values(x[i : i + 1], check_additivity=False)
        times.append(time.perf_counter() - t)
    return {
        "version": shap.__version__,
        "method": "TreeExplainer, feature_perturbation=tree_path_dependent",
        "explainer_init_seconds": init_seconds,
        "accounts": len(times),
        "ms_per_account": float(np.median(times) * 1000),
        "trees": len(model.estimators_),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--peer", required=True, choices=["sklearn", "xgboost", "ydf", "shap"])
    p.add_argument("--train")
    p.add_argument("--test", required=True)
    p.add_argument("--all")
    p.add_argument("--trees", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model-out")
    p.add_argument("--model-in")
    p.add_argument("--accounts", type=int, default=3)
    args = p.parse_args()
    if args.peer != "shap" and not args.train:
        p.error("--train is required")
    run = {"sklearn": run_sklearn, "xgboost": run_xgboost, "ydf": run_ydf, "shap": run_shap}
    out = run[args.peer](args)
    out["peer"] = args.peer
    sys.stdout.flush()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
