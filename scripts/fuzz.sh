#!/usr/bin/env bash
# Runs every native Go fuzz target of the module for FUZZTIME each (default 10s). The seed
# corpora under testdata/fuzz are also replayed by the ordinary test run.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-10s}"
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/func //'); do
    echo "fuzz $pkg $f ($FUZZTIME)"
    go test "$pkg" -run '^$' -fuzz "^$f\$" -fuzztime "$FUZZTIME" > /tmp/fuzz.$$.log 2>&1 || { cat /tmp/fuzz.$$.log; exit 1; }
  done
done
rm -f /tmp/fuzz.$$.log
