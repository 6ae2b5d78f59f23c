#!/usr/bin/env bash
# The test command (README, and .ci/run): install into .venv, lint, type-check, run every suite.
# Back-end suites start what they need themselves (a real single-node Slurm via apt
# packages when run as root; the Deadline Cloud fake and moto on loopback).
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
echo "== pip install -e '.[test]' into .venv (the first time downloads the test dependencies)"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | { grep -v '^WARNING: Location' || true; }
echo "== ruff"; .venv/bin/ruff check aiofarm tests benchmarks
echo "== mypy --strict"; .venv/bin/mypy
# the documentation site (mkdocs.yml): a broken link, a missing page or an API name the
# reference cannot find fails the run (~10 s)
echo "== mkdocs build --strict"; NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict -q
echo "== pytest"
set +e
.venv/bin/python -m pytest -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi
exit "$rc"
