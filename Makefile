# pyhost — build, serve the example, test, benchmark.
# `make help` lists the targets.

# sudo resets PATH; fall back to where the Go tarball installs.
GO      ?= $(shell command -v go || echo /usr/local/go/bin/go)
BIN     := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
LISTEN  ?= 127.0.0.1:8000

.PHONY: all build serve test test-deps unit integration fuzz bench vet fmt help clean install

all: build

help:
	@echo "make build   build bin/pyhostd and bin/pyctl"
	@echo "make serve   build, then serve examples/hello at http://$(LISTEN)/ (Ctrl-C stops)"
	@echo "make test    install what the tests need (Debian packages, as root), run the whole suite"
	@echo "make fuzz    run the protocol fuzzers for a while (FUZZTIME=30s)"
	@echo "make bench   benchmark pyhost against Apache+mod_wsgi and nginx+uWSGI (root; see bench/README.md)"
	@echo "make install install the systemd service (root; see docs/admin-guide.md)"

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/pyhostd ./cmd/pyctl

serve: build
	@scripts/serve-example.sh $(LISTEN)

test-deps:
	@scripts/install-test-deps.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

test: test-deps vet
	$(GO) test -race -count=1 -timeout 14m ./...

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /integration)

integration: build
	$(GO) test -race -count=1 -v ./integration/

FUZZTIME ?= 30s
fuzz:
	$(GO) test ./wsgiadapter/ -run '^$$' -fuzz FuzzReadFrame -fuzztime $(FUZZTIME)
	$(GO) test ./wsgiadapter/ -run '^$$' -fuzz FuzzParseRequest -fuzztime $(FUZZTIME)
	$(GO) test ./wsgiadapter/ -run '^$$' -fuzz FuzzResponse -fuzztime $(FUZZTIME)

bench: build
	bench/run.sh

install: build
	scripts/install.sh

clean:
	rm -rf $(BIN)
