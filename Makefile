# pyhost — build, serve the example, test, benchmark.
# `make help` lists the targets.

# sudo resets PATH; fall back to where the Go tarball installs.
GO      ?= $(shell command -v go || echo /usr/local/go/bin/go)
BIN     := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
LISTEN  ?= 127.0.0.1:8000

.PHONY: all build serve test test-go test-deps unit integration fuzz bench vet lint vulncheck fmt help clean install uninstall deb

all: build

help:
	@echo "make build   build bin/pyhostd, bin/pyctl and bin/pyhost-sandbox (the sandbox's trampoline)"
	@echo "make serve   build, then serve examples/hello at http://$(LISTEN)/ (Ctrl-C stops)"
	@echo "make test    install what the tests need (Debian packages, as root), run the whole suite"
	@echo "make lint    staticcheck on the Go code, pyflakes on the Python worker (make test runs it, with vet and the tests)"
	@echo "make vulncheck  govulncheck against the Go vulnerability database (needs https://vuln.go.dev)"
	@echo "make fuzz    run every fuzzer for a while each (FUZZTIME=30s)"
	@echo "make bench   benchmark pyhost against Apache+mod_wsgi and nginx+uWSGI (root; see bench/README.md)"
	@echo "make install install the systemd service (root; see docs/admin-guide.md)"
	@echo "make uninstall  remove what make install installed, keeping /etc/pyhost (PURGE=1: config, state, logs, user too)"
	@echo "make deb    build the Debian package bin/pyhost_VERSION_ARCH.deb (OUT=dir elsewhere)"

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/pyhostd ./cmd/pyctl ./cmd/pyhost-sandbox

serve: build
	@scripts/serve-example.sh $(LISTEN)

test-deps:
	@scripts/install-test-deps.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

# Pinned so a new release's new checks never break a build that passed;
# both are fetched from the Go module proxy on first use.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOVULNCHECK ?= golang.org/x/vuln/cmd/govulncheck@v1.10.0

# Debian's python3 (the one workers run by default), not a python3 that
# happens to come first on PATH.
lint:
	$(GO) run $(STATICCHECK) ./...
	/usr/bin/python3 -m pyflakes wsgiadapter/pyhost_worker.py

# Not part of make test: the vulnerability database is fetched from
# vuln.go.dev, which CI machines may not reach.
vulncheck:
	$(GO) run $(GOVULNCHECK) ./...

# vet, lint and the tests run side by side (-j3): the tests spend most of
# their time waiting for the processes they start, and vet and
# staticcheck use the CPUs meanwhile. Each still fails make test; -Oline
# keeps their lines whole.
test: test-deps
	@$(MAKE) --no-print-directory -j3 -Oline vet lint test-go

# -trimpath: what Go compiles no longer depends on where the checkout
# is, so a fresh clone (CI) takes every package it did not change from
# Go's build cache (the tests' build in a new clone: 131 s -> 36 s here).
test: export GOFLAGS := $(strip $(GOFLAGS) -trimpath)

# The integration package first: the longest, it then runs from the
# start while the others take turns beside it.
test-go:
	$(GO) test -race -count=1 -timeout 14m ./integration/ ./...

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /integration)

integration: build
	$(GO) test -race -count=1 -v ./integration/

FUZZTIME ?= 30s
# Every Fuzz function of every package, each for FUZZTIME (go test -fuzz
# takes one target at a time).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	    dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	    for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | cut -d' ' -f2); do \
	        echo "== $$pkg $$f"; \
	        $(GO) test $$pkg -run '^$$$$' -fuzz "^$${f}\$$" -fuzztime $(FUZZTIME); \
	    done; \
	done

bench: build
	bench/run.sh

install: build
	scripts/install.sh

uninstall:
	PURGE=$(PURGE) scripts/uninstall.sh

# dpkg-deb from Debian's dpkg, not a Go packager: no new module, and the
# tool that installs the package is the one that builds it.
deb:
	GO=$(GO) OUT=$(or $(OUT),$(BIN)) packaging/build-deb.sh

clean:
	rm -rf $(BIN)
