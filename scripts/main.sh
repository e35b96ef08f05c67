#!/usr/bin/env bash
# The main job: the end-to-end LinguaLIFT pipeline on the embedded default models and data.
# Extra arguments go to `lingualift pipeline` (see `lingualift pipeline --help`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$repo"
lingualift pipeline "$@"
