#!/usr/bin/env bash
# Runs every native Go fuzz target of the module for FUZZTIME each (default 10s). The seed
# corpora under <package>/testdata/fuzz/<FuzzName> are also replayed by the ordinary test run;
# this script first checks that every committed corpus sits where `go test` finds it.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-10s}"

misplaced=0
while IFS= read -r corpus; do
  name=$(basename "$corpus")
  pkgdir=$(dirname "$(dirname "$(dirname "$corpus")")")
  if ! grep -qs "^func $name(" "$pkgdir"/*_test.go; then
    echo "corpus $corpus has no $name in $pkgdir: go test never replays it"
    misplaced=1
  fi
done < <(find . -path ./.git -prune -o -type d -path '*/testdata/fuzz/*' -print)
[ "$misplaced" = 0 ] || exit 1

n=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/func //'); do
    echo "fuzz $pkg $f ($FUZZTIME)"
    go test "$pkg" -run '^$' -fuzz "^$f\$" -fuzztime "$FUZZTIME" > /tmp/fuzz.$$.log 2>&1 || { cat /tmp/fuzz.$$.log; exit 1; }
    n=$((n + 1))
  done
done
rm -f /tmp/fuzz.$$.log
echo "fuzzed $n targets for $FUZZTIME each"
