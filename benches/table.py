"""The reference's model table in Python: scikit-learn's (or the library's own) version of
every row of `spamscope compare`, fitted on the split spamscope hands over.

`spamscope compare` runs this for the rows it cannot fit itself (XGBoost, LightGBM,
CatBoost and the ensembles built on XGBoost), marked "peer - not promotable";
`spamscope bench --table` runs it for every row, beside spamscope's own fit of the same
model on the same split.

Usage:
  python table.py --train-x TRAIN.f64 --train-y TRAIN.u8 --test-x TEST.f64
                  --model NAME [--model NAME ...] [--seed 42] [--threads T]
                  [--knn-sample 20000]

The split exactly as spamscope fitted on it (its rows, its median imputation: no
missing values): `.f64` files hold the X1..X51 values of each row in order, row after
row, as little-endian float64; `.u8` files one byte per row, the label (0 or 1). For
each model, in order, one JSON line on stdout:
  {"name", "library", "version", "fit_seconds", "scores": [one per test row]}
or {"name", "missing": "ONE-LINE REASON"} when the library is not installed or the fit
fails. spamscope computes every metric from the scores, with its own (scikit-learn-
exact) metrics, so both columns of the table are measured alike. Progress goes to
stderr.
"""
import argparse
import json
import sys
import time
import traceback

N_FEATURES = 51
# Spammers are 2.7% of accounts: the reference weighs them 36 to 1 in XGBoost and CatBoost.
POS_WEIGHT = 36


def sigmoid(z):
    import numpy as np
    return 1.0 / (1.0 + np.exp(-z))


class Fitted:
    """A model with fit(X, y) and scores(X): the spammer probability of each row."""

    def __init__(self, m):
        self.m = m

    def fit(self, X, y):
        self.m.fit(X, y)
        return self


class Proba(Fitted):
    def scores(self, X):
        return self.m.predict_proba(X)[:, 1]


class Decision(Fitted):
    """A classifier without probabilities (Ridge, SGD): the logistic function of its
    decision value, as spamscope scores them."""

    def scores(self, X):
        return sigmoid(self.m.decision_function(X))


class HardVote(Fitted):
    """VotingClassifier(voting="hard") has no probabilities: the score is the share of
    members voting spammer (0, 1/3, 2/3, 1), so 0.5 is its majority vote."""

    def scores(self, X):
        import numpy as np
        return np.mean([e.predict(X) for e in self.m.estimators_], axis=0)


class Sampled(Proba):
    """KNN: fitted on a stratified sample of the training rows, as spamscope's is."""

    def __init__(self, m, n, seed):
        super().__init__(m)
        self.n, self.seed = n, seed

    def fit(self, X, y):
        from sklearn.model_selection import train_test_split
        if self.n < len(y):
            X, _, y, _ = train_test_split(X, y, train_size=self.n, stratify=y, random_state=self.seed)
        return super().fit(X, y)


def library(module):
    m = __import__(module)
    return module, m.__version__


def build(name, seed, threads, knn_sample):
    """(model with fit/scores, (library, version)) for a row of spamscope's table."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rf = dict(max_depth=20, min_samples_split=5, class_weight="balanced", n_jobs=threads, random_state=seed)

    def forest(n, **kw):
        from sklearn.ensemble import RandomForestClassifier
        return RandomForestClassifier(n_estimators=n, **{**rf, **kw})

    def hgb():
        from sklearn.ensemble import HistGradientBoostingClassifier
        return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, max_depth=6, random_state=seed)

    def logistic(**kw):
        from sklearn.linear_model import LogisticRegression
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, **kw))

    def xgb():
        from xgboost import XGBClassifier
        return XGBClassifier(scale_pos_weight=POS_WEIGHT, tree_method="hist", n_jobs=threads, random_state=seed)

    sk = library("sklearn")
    if name == "forest 300 trees":
        return Proba(forest(300)), sk
    if name == "forest 100 trees":
        return Proba(forest(100)), sk
    if name == "forest 100 unweighted":
        return Proba(forest(100, class_weight=None)), sk
    if name == "forest 100 + SMOTE":
        from imblearn.over_sampling import SMOTE
        from imblearn.pipeline import make_pipeline as imb_pipeline
        return Proba(imb_pipeline(SMOTE(k_neighbors=5, random_state=seed), forest(100, class_weight=None))), library("imblearn")
    if name == "extra-trees 300":
        from sklearn.ensemble import ExtraTreesClassifier
        return Proba(ExtraTreesClassifier(n_estimators=300, bootstrap=False, **rf)), sk
    if name == "decision tree":
        from sklearn.tree import DecisionTreeClassifier
        return Proba(DecisionTreeClassifier(max_depth=20, min_samples_split=5, class_weight="balanced", random_state=seed)), sk
    if name == "gradient boosting":
        return Proba(hgb()), sk
    if name == "logistic regression":
        return Proba(logistic()), sk
    if name == "Gaussian naive Bayes":
        from sklearn.naive_bayes import GaussianNB
        return Proba(GaussianNB()), sk
    if name == "Bernoulli naive Bayes":
        from sklearn.naive_bayes import BernoulliNB
        return Proba(BernoulliNB(binarize=0.0)), sk
    if name.startswith("KNN (k = "):
        from sklearn.neighbors import KNeighborsClassifier
        k = int(name[len("KNN (k = "):-1])
        return Sampled(make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=k, n_jobs=threads)), knn_sample, seed), sk
    if name == "Bagging (10 forests of 100)":
        from sklearn.ensemble import BaggingClassifier
        return Proba(BaggingClassifier(forest(100), n_estimators=10, random_state=seed)), sk
    if name == "Ridge classifier":
        from sklearn.linear_model import RidgeClassifier
        return Decision(make_pipeline(StandardScaler(), RidgeClassifier(class_weight="balanced"))), sk
    if name == "SGD classifier":
        from sklearn.linear_model import SGDClassifier
        return Decision(make_pipeline(StandardScaler(), SGDClassifier(class_weight="balanced", random_state=seed))), sk
    if name == "AdaBoost":
        from sklearn.ensemble import AdaBoostClassifier
        return Proba(AdaBoostClassifier(random_state=seed)), sk
    if name == "Voting (soft)":
        from sklearn.ensemble import VotingClassifier
        members = [("forest", forest(100)), ("boosting", hgb()), ("logistic", logistic())]
        return Proba(VotingClassifier(members, voting="soft")), sk
    if name == "Voting (hard)":
        from sklearn.ensemble import VotingClassifier
        members = [("forest", forest(100)), ("boosting", hgb()), ("xgboost", xgb())]
        return HardVote(VotingClassifier(members, voting="hard")), library("xgboost")
    if name == "Stacking":
        from sklearn.ensemble import StackingClassifier
        from sklearn.linear_model import LogisticRegression
        members = [("forest", forest(100)), ("boosting", hgb()), ("xgboost", xgb())]
        final = LogisticRegression(class_weight="balanced", max_iter=1000)
        return Proba(StackingClassifier(members, final_estimator=final, cv=5)), library("xgboost")
    if name == "Neural network (MLP 100-50)":
        from sklearn.neural_network import MLPClassifier
        return Proba(make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(100, 50), random_state=seed))), sk
    if name == "XGBoost":
        return Proba(xgb()), library("xgboost")
    if name == "LightGBM":
        from lightgbm import LGBMClassifier
        return Proba(LGBMClassifier(class_weight="balanced", n_jobs=threads, random_state=seed, verbose=-1)), library("lightgbm")
    if name == "CatBoost":
        from catboost import CatBoostClassifier
        m = CatBoostClassifier(class_weights=[1, POS_WEIGHT], random_seed=seed, thread_count=threads, verbose=0, allow_writing_files=False)
        return Proba(m), library("catboost")
    raise ValueError(f"no Python version of {name!r}")


def one_line(e):
    text = f"{type(e).__name__}: {e}".replace("\n", " ").replace("\t", " ")
    return text[:300]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-x", required=True)
    ap.add_argument("--train-y", required=True)
    ap.add_argument("--test-x", required=True)
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=-1)
    ap.add_argument("--knn-sample", type=int, default=20000)
    a = ap.parse_args()
    try:
        import numpy as np
        Xtr = np.fromfile(a.train_x, dtype="<f8").reshape(-1, N_FEATURES)
        ytr = np.fromfile(a.train_y, dtype=np.uint8).astype(int)
        Xte = np.fromfile(a.test_x, dtype="<f8").reshape(-1, N_FEATURES)
        if len(ytr) != len(Xtr):
            raise ValueError(f"{len(Xtr)} training rows but {len(ytr)} labels")
    except Exception as e:  # noqa: BLE001 - every row says why
        for name in a.model:
            print(json.dumps({"name": name, "missing": f"cannot read the split: {one_line(e)}"}), flush=True)
        return
    for name in a.model:
        try:
            model, (lib, version) = build(name, a.seed, a.threads, a.knn_sample)
        except ImportError as e:
            print(json.dumps({"name": name, "missing": f"not installed: {one_line(e)}"}), flush=True)
            continue
        except Exception as e:  # noqa: BLE001
            print(json.dumps({"name": name, "missing": one_line(e)}), flush=True)
            continue
        print(f"table.py: fitting {name} ({lib} {version})", file=sys.stderr, flush=True)
        try:
            t = time.perf_counter()
            model.fit(Xtr, ytr)
            fit = time.perf_counter() - t
            scores = np.asarray(model.scores(Xte), dtype=float)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
            print(json.dumps({"name": name, "missing": f"{lib} failed: {one_line(e)}"}), flush=True)
            continue
        print(json.dumps({
            "name": name,
            "library": lib,
            "version": version,
            "fit_seconds": fit,
            "scores": [float(s) for s in scores],
        }), flush=True)


if __name__ == "__main__":
    main()
