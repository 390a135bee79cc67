# oauthgate. `make run` starts the demo gateway; `make test` runs every test.
GO ?= go

.PHONY: build run test vet clean

build:
	$(GO) build -o bin/caddy ./cmd/caddy
	$(GO) build -o bin/iflow ./integration/iflow

# The demo: a client, a policy and the sample backend, on Caddyfile.example.
run: build
	scripts/run-demo.sh

# Unit tests and the end-to-end tests (which build the real binary), all
# under the race detector.
test: vet
	$(GO) test -race -count=1 -timeout 20m ./...

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin .demo
