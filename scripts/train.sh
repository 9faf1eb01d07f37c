#!/usr/bin/env bash
# The main job: sets up .venv if needed, then trains the DCGAN on MNIST into runs/dcgan.
#   bash scripts/train.sh                          # configs/dcgan.py, outputs in runs/dcgan
#   bash scripts/train.sh --config.num_train_steps=500   # extra flags go to gan_aec.main
# Set CONFIG=configs/X.py and WORKDIR=DIR to train another config or write elsewhere.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
CONFIG="${CONFIG:-configs/dcgan.py}"
NAME="$(basename "${CONFIG%%:*}" .py)"
WORKDIR="${WORKDIR:-runs/$NAME}"
exec python -m gan_aec.main --config="$CONFIG" --workdir="$WORKDIR" "$@"
