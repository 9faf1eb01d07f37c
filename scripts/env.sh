# Sourced by scripts/train.sh and scripts/test.sh: creates .venv (if missing) and installs the
# package with its test extra (again only when pyproject.toml changed), then activates it.
# Needs Python >= 3.11 as `python3` (or set PYTHON=/path/to/python3.11). Only the package index is
# contacted; no dataset is downloaded here.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="${GAN_AEC_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "gan_aec needs Python >= 3.11"'
  echo "Creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.gan_aec-installed"
WANT="$(cat pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "Installing gan_aec and its dependencies into $VENV (first run: a few minutes)"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e ".[test]"
  echo "$WANT" > "$STAMP"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
# TensorFlow (used only for tf.data and TensorBoard events) is chatty at start-up.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
