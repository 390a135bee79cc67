#!/usr/bin/env bash
# Reports known vulnerabilities that oauthgate's code can reach, with
# govulncheck: it exits non-zero when a vulnerable function of a
# dependency or of the Go standard library is called from our code.
#
# The database is the Go vulnerability database. By default it is built
# from the golang.org/x/vulndb module, which holds the same OSV reports as
# vuln.go.dev, because the Go module proxy is reachable where vuln.go.dev
# may not be (it is not on the project's build machines). Set VULNDB to a
# database URL (https://vuln.go.dev, file:///path) to use that instead.
#
#   scripts/vulncheck.sh                        # newest database
#   VULNDB_VERSION=v0.0.0-2026... scripts/vulncheck.sh   # a pinned one
set -euo pipefail
cd "$(dirname "$0")/.."

GOVULNCHECK_VERSION=v1.9.0
VULNDB_VERSION=${VULNDB_VERSION:-latest}
bin=$PWD/bin
GOBIN=$bin go install "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION"

db=${VULNDB:-}
if [[ -z $db ]]; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	# indexdb is the vulndb module's own tool for turning its OSV files
	# into the database layout govulncheck reads.
	# One lookup of the version: x/vulndb is published many times a day,
	# and the tool, the data and the version printed must be the same one.
	version=$(cd "$tmp" && go list -m -f '{{.Version}}' "golang.org/x/vulndb@$VULNDB_VERSION")
	GOBIN=$tmp go install "golang.org/x/vulndb/cmd/indexdb@$version"
	dir=$(cd "$tmp" && go mod download -json "golang.org/x/vulndb@$version" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	"$tmp/indexdb" -vulns "$dir/data/osv" -out "$tmp/db"
	db=file://$tmp/db
	echo "vulncheck.sh: database golang.org/x/vulndb@$version ($(ls "$dir/data/osv" | wc -l) reports)"
fi

"$bin/govulncheck" -db "$db" ./...
