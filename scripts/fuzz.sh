#!/usr/bin/env bash
# Runs every Go fuzz target in the repository, one after the other, each
# for the given time (default 10s; a bare number means seconds). Targets
# are found by their declaration, so a new `func FuzzX(f *testing.F)`
# is fuzzed without being listed anywhere. go test fuzzes one target of
# one package per run, hence the loop. A failing input is written to the
# package's testdata/fuzz/FuzzX/ by go test; commit it with the fix.
#
#   scripts/fuzz.sh        # 10s each
#   scripts/fuzz.sh 60s    # what `make fuzz` runs
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${1:-10s}
[[ $fuzztime =~ ^[0-9]+$ ]] && fuzztime+=s

targets=$(grep -rEo --include='*_test.go' --exclude-dir=node_modules --exclude-dir=.git \
	'^func Fuzz[A-Za-z0-9_]*\(' . | sed -E 's/^\.\/(.*)\/[^/]*:func (Fuzz[A-Za-z0-9_]*)\($/\1 \2/' | sort)
if [[ -z $targets ]]; then
	echo "fuzz.sh: no fuzz targets found" >&2
	exit 1
fi

failed=()
while read -r dir name; do
	echo "== $name (./$dir, $fuzztime)"
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "./$dir"; then
		failed+=("$name (./$dir)")
	fi
done <<<"$targets"

if ((${#failed[@]})); then
	printf 'fuzz.sh: failed: %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "fuzz.sh: $(wc -l <<<"$targets") targets fuzzed for $fuzztime each, no failure"
