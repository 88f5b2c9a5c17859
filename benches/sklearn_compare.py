"""scikit-learn's versions of the comparison's models on a stratified 80/20 split of a CSV
(label,user_id,X1..X51), for checking `spamscope compare` against a peer in the same run.
Usage: python sklearn_compare.py DATA.csv [--knn-sample 20000]
Prints one JSON object: {"models": [{"name", "accuracy", ..., "fit_seconds"}]}.
The split differs from spamscope's (same sizes and class balance), so expect agreement
within sampling noise, not equality."""
import json, sys, time
import numpy as np, pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import StandardScaler
from sklearn.pipeline import make_pipeline
from sklearn.ensemble import RandomForestClassifier, ExtraTreesClassifier, HistGradientBoostingClassifier
from sklearn.tree import DecisionTreeClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB, BernoulliNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.metrics import accuracy_score, precision_score, recall_score, f1_score, roc_auc_score, average_precision_score

path = sys.argv[1]
knn_sample = int(sys.argv[sys.argv.index("--knn-sample") + 1]) if "--knn-sample" in sys.argv else 20000
d = pd.read_csv(path)
X = d[[f"X{i}" for i in range(1, 52)]].to_numpy(dtype=float)
y = d["label"].to_numpy()
Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, stratify=y, random_state=42)
imp = SimpleImputer(strategy="median").fit(Xtr)
Xtr, Xte = imp.transform(Xtr), imp.transform(Xte)
rf = dict(max_depth=20, min_samples_split=5, class_weight="balanced", n_jobs=-1, random_state=42)
models = [
    ("forest 300 trees", RandomForestClassifier(n_estimators=300, **rf)),
    ("forest 100 trees", RandomForestClassifier(n_estimators=100, **rf)),
    ("extra-trees 300", ExtraTreesClassifier(n_estimators=300, **rf)),
    ("decision tree", DecisionTreeClassifier(max_depth=20, min_samples_split=5, class_weight="balanced", random_state=42)),
    ("gradient boosting", HistGradientBoostingClassifier(random_state=42)),
    ("logistic regression", make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))),
    ("Gaussian naive Bayes", GaussianNB()),
    ("Bernoulli naive Bayes", BernoulliNB(binarize=0.0)),
    ("KNN (k = 5)", make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=5))),
]
out = []
rng = np.random.RandomState(42)
for name, m in models:
    Xf, yf = Xtr, ytr
    if name.startswith("KNN") and knn_sample < len(ytr):
        Xf, _, yf, _ = train_test_split(Xtr, ytr, train_size=knn_sample, stratify=ytr, random_state=42)
    t = time.time()
    m.fit(Xf, yf)
    fit = time.time() - t
    p = m.predict_proba(Xte)[:, 1]
    pred = (p > 0.5).astype(int)
    out.append(dict(name=name, accuracy=accuracy_score(yte, pred), precision=precision_score(yte, pred, zero_division=0),
                    recall=recall_score(yte, pred), f1=f1_score(yte, pred), roc_auc=roc_auc_score(yte, p),
                    average_precision=average_precision_score(yte, p), fit_seconds=fit))
    print(name, "done", file=sys.stderr, flush=True)
print(json.dumps({"models": out}))
