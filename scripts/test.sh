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
# -n: most of a test's time is waiting (moto, sshd, kopsy's start), so one worker more than the
# machine has cores keeps them busy; --dist loadfile keeps each module in one worker, in file
# order, so module fixtures are built once and a module's last test sees its earlier ones.
# KOPSY_TEST_WORKERS=0 runs everything in this one process (docs/testing.md, "CI time").
WORKERS="${KOPSY_TEST_WORKERS:-$(( $(nproc) + 1 > 8 ? 8 : $(nproc) + 1 ))}"
exec "$VENV/bin/pytest" -q -p no:cacheprovider --durations=30 -n "$WORKERS" --dist loadfile "$@"
