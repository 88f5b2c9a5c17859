#!/usr/bin/env bash
# Creates the Python venv with scikit-learn that `spamscope bench` compares against.
# Usage: benches/make_venv.sh DIR
set -euo pipefail
dir=${1:?usage: make_venv.sh DIR}
if [ ! -x "$dir/bin/python" ]; then
  python3 -m venv "$dir"
fi
"$dir/bin/python" -c 'import numpy, pandas, sklearn' 2>/dev/null ||
  "$dir/bin/pip" install --quiet numpy pandas scikit-learn
