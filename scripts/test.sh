#!/usr/bin/env bash
# Runs the test suite (installs the environment first if needed). Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$repo"
python -m pytest "$@"
