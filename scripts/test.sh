#!/usr/bin/env bash
# The test suite: sets up .venv if needed, then runs pytest (extra arguments go to pytest).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec python -m pytest "$@"
