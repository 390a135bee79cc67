# oauthgate. `make run` starts the demo gateway; `make test` runs every test.
GO ?= go
NPM ?= npm

# Go 1.27.3, which the go command fetches from the module proxy once (about
# 76 MB): Go 1.26.8, the newest 1.26 here, has known vulnerabilities in
# net/http and crypto/tls that oauthgate reaches (scripts/vulncheck.sh).
# The module itself still builds with Go 1.26 for xcaddy users.
export GOTOOLCHAIN := go1.27.3

# The Node clients the end-to-end tests run (openid-client, newman), pinned
# in package-lock.json. npm ci writes node_modules/.package-lock.json, so it
# runs again only when the lock file or package.json is newer.
NODE_CLIENTS := integration/clients
NODE_MODULES := $(NODE_CLIENTS)/node_modules/.package-lock.json

.PHONY: build run test vet clean node-clients xcaddy bench

build:
	$(GO) build -o bin/caddy ./cmd/caddy
	$(GO) build -o bin/iflow ./integration/iflow

# The demo: a client, a policy and the sample backend, on Caddyfile.example.
run: build
	scripts/run-demo.sh

# Unit tests and the end-to-end tests (which build the real binary and run
# real clients against it), all under the race detector; then every fuzz
# target for a few seconds.
test: vet $(NODE_MODULES)
	$(GO) test -race -count=1 -timeout 20m ./...
	scripts/fuzz.sh 3s

node-clients: $(NODE_MODULES)

$(NODE_MODULES): $(NODE_CLIENTS)/package-lock.json $(NODE_CLIENTS)/package.json
	$(NPM) ci --prefix $(NODE_CLIENTS) --no-audit --no-fund
	@touch $@

# Caddy built the way users build it, with xcaddy from this checkout, and
# the end-to-end tests run against that binary instead of cmd/caddy. The
# zero version keeps go from asking the module proxy for a module that is
# only on this disk.
XCADDY_VERSION := v0.4.5
CADDY_VERSION = $(shell $(GO) list -m -f '{{.Version}}' github.com/caddyserver/caddy/v2)

xcaddy: $(NODE_MODULES)
	$(GO) install github.com/caddyserver/xcaddy/cmd/xcaddy@$(XCADDY_VERSION)
	$$($(GO) env GOPATH)/bin/xcaddy build $(CADDY_VERSION) --output bin/xcaddy-caddy \
		--with github.com/oauthgate/oauthgate@v0.0.0-00010101000000-000000000000=$(CURDIR)
	bin/xcaddy-caddy list-modules | grep -q '^http.handlers.oauth_guard$$'
	OAUTHGATE_CADDY_BIN=$(CURDIR)/bin/xcaddy-caddy $(GO) test -count=1 -timeout 10m ./integration

# Go benchmarks of the hot paths and a load benchmark of the built gateway
# against plain Caddy in the same run (wrk, installed when missing); prints
# the ratios and writes bench-results/<UTC time>.txt. BENCHMARKS.md has the
# settings (BENCH_DURATION, ...) and the latest numbers.
bench:
	scripts/bench.sh

# Every Go fuzz target (any `func FuzzX` in the tree) for FUZZTIME each,
# one after the other; fuzz-smoke is the short run for `make test`. Inputs
# that fail land in the package's testdata/fuzz/FuzzX/: commit them with
# the fix.
FUZZTIME ?= 60s
.PHONY: fuzz fuzz-smoke

fuzz:
	scripts/fuzz.sh $(FUZZTIME)

fuzz-smoke:
	scripts/fuzz.sh 3s

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin .demo
