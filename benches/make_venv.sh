#!/usr/bin/env bash
# Creates the Python venv that `spamscope bench` compares against and that `spamscope
# compare` runs its peer rows in: numpy, pandas and scikit-learn (every peer reads the
# split with pandas and scores with sklearn.metrics), then XGBoost, YDF, shap, LightGBM,
# CatBoost and imbalanced-learn (SMOTE), each installed on its own so that one failing
# wheel does not stop the others.
#
# Usage: benches/make_venv.sh DIR [PEER...]   (all peers when none is named)
#
# Idempotent: what is already importable is not installed again.
# Progress and pip's errors go to stderr. stdout carries one line per peer for the bench:
#   PEER<TAB>ok
#   PEER<TAB>missing<TAB>ONE-LINE REASON
# for PEER in sklearn, xgboost, ydf, shap, lightgbm, catboost, imblearn (or those named). A peer that failed to install is a line, not
# an exit status: the script exits non-zero only when the venv or its base (numpy,
# pandas, scikit-learn) cannot be installed, so callers that need only the base can stop.
set -uo pipefail
dir=${1:?usage: make_venv.sh DIR [PEER...]}
shift
wanted=" $* "

if [ ! -x "$dir/bin/python" ]; then
  echo "make_venv: creating $dir" >&2
  if ! out=$(python3 -m venv "$dir" 2>&1); then
    echo "$out" >&2
    echo "make_venv: python3 -m venv failed: $(echo "$out" | grep -v '^\s*$' | tail -n 1)" >&2
    exit 1
  fi
fi
py="$dir/bin/python"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# The one line a failed pip run is best summarised by: its last "ERROR:" line, else its
# last non-empty line.
reason() {
  local r
  r=$(grep '^ERROR:' "$log" | tail -n 1)
  [ -n "$r" ] || r=$(grep -v '^\s*$' "$log" | tail -n 1)
  echo "${r:-pip failed}" | tr '\t' ' '
}

importable() { "$py" -c "import $1" >/dev/null 2>&1; }

# pip_install PACKAGE...: installs quietly; on failure leaves pip's output in $log and
# echoes it to stderr.
pip_install() {
  echo "make_venv: pip install $*" >&2
  if "$py" -m pip install --quiet --disable-pip-version-check "$@" >"$log" 2>&1; then
    return 0
  fi
  cat "$log" >&2
  return 1
}

# The base every peer needs.
base_error=""
if ! importable 'numpy, pandas, sklearn'; then
  if ! pip_install numpy pandas scikit-learn; then
    base_error="pip install numpy pandas scikit-learn failed: $(reason)"
  fi
fi

# try_install MODULE PACKAGE: installs PACKAGE and checks MODULE imports; on failure
# sets `why` to the one-line reason.
try_install() {
  local module=$1 package=$2
  if ! pip_install "$package"; then
    why="pip install $package failed: $(reason)"
    return 1
  fi
  if ! importable "$module"; then
    # Installed but broken (a wheel for another platform, a missing system library).
    why="import $module failed after pip install $package: $("$py" -c "import $module" 2>&1 | grep -v '^\s*$' | tail -n 1)"
    return 1
  fi
}

# peer NAME MODULE PACKAGE [FALLBACK_PACKAGE]
peer() {
  local name=$1 module=$2 package=$3 fallback=${4:-} first
  [ "$wanted" = "  " ] || [[ "$wanted" == *" $name "* ]] || return 0
  why=""
  if [ -n "$base_error" ]; then
    printf '%s\tmissing\t%s\n' "$name" "$base_error"
  elif importable "$module" || try_install "$module" "$package"; then
    printf '%s\tok\n' "$name"
  elif first=$why && [ -n "$fallback" ] && try_install "$module" "$fallback"; then
    printf '%s\tok\n' "$name"
  else
    [ -n "$fallback" ] && why="$first; $why"
    printf '%s\tmissing\t%s\n' "$name" "$(echo "$why" | tr '\t' ' ')"
  fi
}

peer sklearn sklearn scikit-learn
# xgboost-cpu is the same library without the CUDA build: the plain `xgboost` wheel
# pulls in nvidia-nccl-cu12 (hundreds of MB) that a CPU benchmark never loads.
peer xgboost xgboost xgboost-cpu xgboost
peer ydf ydf ydf
peer shap shap shap
peer lightgbm lightgbm lightgbm
peer catboost catboost catboost
peer imblearn imblearn imbalanced-learn
[ -z "$base_error" ]
