"""Runs the reference system's own Streamlit client, unchanged, against `spamscope
serve`, and drives it like a moderator: the form is built from /model/info, Predict is
clicked, the verdict, gauge and risk factors are shown, feedback is submitted (with the
prediction id the client invents), and the feedback statistics are shown.

Not part of `cargo test`: the client belongs to another repository
(rr4323/fiverr_spam_detection), which is not copied here. Usage:

    python drive.py REFERENCE_CHECKOUT API_URL [SET]

SET is a comma-separated list of feature=value pairs to enter in the form (e.g.
X12=1,X8=7) before predicting. Needs streamlit, requests, pandas, plotly, matplotlib and
the opentelemetry packages the client imports. Exits non-zero on the first failure.
"""
import os
import sys

import requests

from streamlit.testing.v1 import AppTest

checkout, api_url = sys.argv[1], sys.argv[2]
settings = dict(p.split("=") for p in sys.argv[3].split(",")) if len(sys.argv) > 3 else {}
os.environ["API_URL"] = api_url
script = os.path.join(checkout, "src", "streamlit_app.py")
sys.path.insert(0, os.path.dirname(script))  # the client imports `ot.frontend_config`

at = AppTest.from_file(script, default_timeout=60)


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        for e in at.exception:
            print("  exception:", e.message)
        for e in at.error:
            print("  error:", e.value)
        sys.exit(1)


def texts():
    parts = [m.value for m in at.markdown] + [e.value for e in at.error]
    parts += [s.value for s in at.success] + [w.value for w in at.warning]
    return "\n".join(str(p) for p in parts)


at.run()
check(not at.exception, "the client starts")
check(not at.error, "no error after loading /model/info")
inputs = {w.key: w for w in list(at.slider) + list(at.number_input) + list(at.selectbox) + list(at.checkbox)}
# The client draws a widget for every numeric and categorical feature and for two of
# the boolean ones (X12, X15); the other flags are sent as 0.
mapping = requests.get(f"{api_url}/model/info", timeout=10).json()["feature_mapping"]
drawn = {f for f, i in mapping.items() if i["type"] != "boolean" or f in ("X12", "X15")}
check({f"input_{f}" for f in drawn} == set(inputs), f"the form has the client's {len(drawn)} inputs")
for name, value in settings.items():
    w = inputs[f"input_{name}"]
    w.set_value(type(w.value)(float(value)) if not isinstance(w.value, bool) else value == "1")
at.button(key="predict_button").click().run()
check(not at.exception, "Predict runs")
check(not at.error, "the prediction has no error")
verdicts = [s.value for s in at.success] + [e.value for e in at.error]
check(any("Legitimate" in v or "Spammer" in v for v in verdicts), f"a verdict is shown: {verdicts}")
shown = texts()
check("Risk Factors Detected" in shown or "No significant risk factors" in shown, "risk factors are shown")
if settings:
    check("Value:" in shown and "Reason:" in shown, "each risk factor shows its value and reason")
check(any("Metrics" in str(t.label) for t in at.tabs), "the model metrics tab is there")
# Feedback: the client invents a uuid as prediction id (it never got one back).
before = requests.get(f"{api_url}/model/feedback/stats", timeout=10).json()
at.radio[0].set_value("No")
at.text_area[0].input("sent a malware installer as a job brief")
submit = [b for b in at.button if b.label == "Submit Feedback"]
check(len(submit) == 1, "the feedback form is there")
submit[0].click().run()
check(not at.exception, "feedback is submitted without an exception")
check(any("Thank you for your feedback" in s.value for s in at.success), "the client thanks for the feedback")
metrics = {m.label: m.value for m in at.metric}
check({"Total Feedback", "Accuracy", "Last Retrain"} <= set(metrics), f"the statistics are shown: {metrics}")
check(not any("Failed to load feedback statistics" in e.value for e in at.error), "the statistics load (last_retrain parses)")
after = requests.get(f"{api_url}/model/feedback/stats", timeout=10).json()
check(after["total_feedback"] == before["total_feedback"] + 1
      and after["correct_predictions"] == before["correct_predictions"]
      and after["unlinked_feedback"] == before["unlinked_feedback"] + 1,
      "the service stored it as incorrect, unlinked (the client's invented id)")
print("the reference client works against", api_url, "-", metrics)
