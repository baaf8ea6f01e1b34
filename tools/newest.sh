#!/usr/bin/env bash
# The newest-versions check: the suite on the newest releases inside setup.cfg's ranges, in a fresh venv.
#
#   tools/newest.sh                # venv in $NEWEST_VENV (default /tmp/kerascnn-newest), then python -m pytest
#   tools/newest.sh --lock         # the same; if the suite passes, its versions become constraints.txt
#   tools/newest.sh -- -x tests/test_serve.py      # arguments after -- go to pytest
#
# It prints the packages whose newest release differs from constraints.txt (the locked set CI installs),
# then pytest's own summary. Record a run in docs/VERSIONS.md; where a release fails, cap its range in
# setup.cfg (or fix the code) before locking it.
set -euo pipefail
cd "$(dirname "$0")/.."
lock=0
if [ "${1:-}" = "--lock" ]; then lock=1; shift; fi
if [ "${1:-}" = "--" ]; then shift; fi
venv=${NEWEST_VENV:-/tmp/kerascnn-newest}

rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet -e '.[test]'
"$venv/bin/pip" freeze --exclude-editable > "$venv/versions.txt"
echo "Newest inside the ranges (>) where it differs from constraints.txt (<):"
diff <(grep -v '^#' constraints.txt | sort -f) <(sort -f "$venv/versions.txt") | grep '^[<>]' \
  || echo "  none: the locked set is the newest"

set +e
"$venv/bin/python" -m pytest "$@"
status=$?
set -e
if [ "$lock" -eq 1 ]; then
  if [ "$status" -ne 0 ]; then
    echo "not locked: the suite did not pass on the newest versions (pytest exit $status)" >&2
  else
    { grep '^#' constraints.txt; cat "$venv/versions.txt"; } > constraints.txt.new
    mv constraints.txt.new constraints.txt
    echo "constraints.txt now holds the versions above"
  fi
fi
exit "$status"
