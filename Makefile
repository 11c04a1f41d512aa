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

bench: release
	$(RELEASE_BIN) bench engine
	$(RELEASE_BIN) bench enrich

clean:
	rm -rf .build
