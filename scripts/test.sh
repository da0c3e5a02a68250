#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what is missing, then runs pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k state -x).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/setup.sh
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
echo "==> mypy"
"$VENV/bin/mypy" kopsy
echo "==> pytest"
# pytest exits 5 when it collected no test: with 'set -e' that fails this script, as it should.
# --durations=30: the CI log ends with the 30 slowest tests, so the next slow-down has a name.
exec "$VENV/bin/pytest" -q -p no:cacheprovider --durations=30 "$@"
