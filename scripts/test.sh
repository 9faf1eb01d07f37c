#!/usr/bin/env bash
# The test suite: sets up .venv if needed, checks style (ruff, configured in pyproject.toml), then
# runs pytest (extra arguments go to pytest).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ruff check --quiet .
exec python -m pytest "$@"
