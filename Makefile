# The two commands a new user runs: `make demo` and `make test`.
SWIFT ?= swift
RELEASE_BIN = .build/release/camfa

.PHONY: deps build release test demo bench clean install

deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

demo:
	@scripts/install-deps.sh demo
	$(SWIFT) build -c release
	@scripts/demo.sh

# Never part of `make test`. E2E_ARGS passes options to `camfa bench e2e`, e.g.
# `make bench E2E_ARGS="--soak 600"` for the 10-minute RSS stability run.
E2E_ARGS ?=

bench: release
	$(RELEASE_BIN) bench engine
	$(RELEASE_BIN) bench enrich
	$(RELEASE_BIN) bench e2e $(E2E_ARGS)

clean:
	rm -rf .build
