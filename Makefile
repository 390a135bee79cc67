# oauthgate. `make run` starts the demo gateway; `make test` runs every test.
GO ?= go
NPM ?= npm

# The Node clients the end-to-end tests run (openid-client, newman), pinned
# in package-lock.json. npm ci writes node_modules/.package-lock.json, so it
# runs again only when the lock file or package.json is newer.
NODE_CLIENTS := integration/clients
NODE_MODULES := $(NODE_CLIENTS)/node_modules/.package-lock.json

.PHONY: build run test vet clean node-clients

build:
	$(GO) build -o bin/caddy ./cmd/caddy
	$(GO) build -o bin/iflow ./integration/iflow

# The demo: a client, a policy and the sample backend, on Caddyfile.example.
run: build
	scripts/run-demo.sh

# Unit tests and the end-to-end tests (which build the real binary and run
# real clients against it), all under the race detector.
test: vet $(NODE_MODULES)
	$(GO) test -race -count=1 -timeout 20m ./...

node-clients: $(NODE_MODULES)

$(NODE_MODULES): $(NODE_CLIENTS)/package-lock.json $(NODE_CLIENTS)/package.json
	$(NPM) ci --prefix $(NODE_CLIENTS) --no-audit --no-fund
	@touch $@

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin .demo
