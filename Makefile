# The two commands a new user runs: `make demo` and `make test`.
SWIFT ?= swift
RELEASE_BIN = .build/release/camfa
BENCH_BIN = .build/release/camfa-bench

.PHONY: deps build release test demo bench detection fuzz clean install install-files

deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# Three runs: the black-box suites (CLITests) block their test threads on child processes
# for minutes, which on 2 cores would starve the in-process HTTP and Kafka tests of the
# concurrency pool they need, and the client suites (CLITests.ClientBlackBoxTests: deadlines measured
# against a daemon frozen with SIGSTOP) need the pool too.
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) build --product CAMFAClient
	$(SWIFT) test --skip-build --skip CLITests
	$(SWIFT) test --skip-build --filter CLITests --skip 'CLITests\.ClientBlackBoxTests'
	$(SWIFT) test --skip-build --filter 'CLITests\.ClientBlackBoxTests'

demo:
	@scripts/install-deps.sh demo
	$(SWIFT) build -c release
	@scripts/demo.sh

# Never part of `make test`. E2E_ARGS passes options to `camfa-bench e2e`, e.g.
# `make bench E2E_ARGS="--soak 600"` for the 10-minute RSS stability run.
E2E_ARGS ?=

bench: release
	$(BENCH_BIN) engine
	$(BENCH_BIN) enrich
	$(BENCH_BIN) checkpoint
	$(BENCH_BIN) e2e $(E2E_ARGS)

# Detection figures of a policy set on the labelled streams (README "Detection figures").
detection: release
	CAMFA=$(RELEASE_BIN) scripts/detection-figures.sh $(DETECTION_SET)

# libFuzzer over what producers, subscribers and policy authors control (issue 22), never
# part of `make test` (which replays the committed corpus instead). FUZZ_RUNS per target;
# new inputs go to .build-fuzz/corpus, crashes to .build-fuzz/crash-*. Linked with lld:
# Debian's gold aborts on the instrumented objects (internal error in format_file_lineno).
FUZZ_RUNS ?= 10000000
FUZZ_TARGETS = ueba mfa-result policy

fuzz: deps
	$(SWIFT) build -c release --product camfa-fuzz --scratch-path .build-fuzz \
	    -Xswiftc -sanitize=fuzzer -Xswiftc -DFUZZING -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p .build-fuzz/corpus/$$t && cp -n fuzz/corpus/$$t/* .build-fuzz/corpus/$$t/ ; \
	    echo "== $$t: $(FUZZ_RUNS) runs"; \
	    CAMFA_FUZZ_TARGET=$$t .build-fuzz/release/camfa-fuzz -runs=$(FUZZ_RUNS) -max_len=65536 -timeout=10 \
	        -artifact_prefix=.build-fuzz/crash-$$t- .build-fuzz/corpus/$$t > .build-fuzz/$$t.log 2>&1; rc=$$?; \
	    grep -E 'DONE|^Done|ERROR|SUMMARY|crash-' .build-fuzz/$$t.log; \
	    [ $$rc -eq 0 ] || { echo "$$t: libFuzzer exited $$rc (.build-fuzz/$$t.log)"; exit 1; }; \
	done

clean:
	rm -rf .build

# `make install` (DESTDIR honoured, as packagers expect): the release binary, the systemd
# unit, the example configuration and the recommended policies (policies/recommended). An existing configuration or policy
# file is never overwritten. `install-files BIN=...` installs a binary built elsewhere
# (tests use the debug build). `make install` builds only: no package installation.
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR ?= /etc/systemd/system
BIN ?= $(RELEASE_BIN)

install:
	$(SWIFT) build -c release --product camfa
	$(MAKE) install-files BIN=$(RELEASE_BIN)

install-files:
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/camfa/policies
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/camfa
	sed -e 's|/usr/local/bin/camfa|$(PREFIX)/bin/camfa|' -e 's|/etc/camfa/|$(SYSCONFDIR)/camfa/|' \
	    deploy/camfa.service > $(DESTDIR)$(UNITDIR)/camfa.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/camfa.service
	@test -e $(DESTDIR)$(SYSCONFDIR)/camfa/secret || \
	    (umask 077 && openssl rand -hex 32 > $(DESTDIR)$(SYSCONFDIR)/camfa/secret)
	@test -e $(DESTDIR)$(SYSCONFDIR)/camfa/camfa.yaml || \
	    sed -e 's|/etc/camfa/|$(SYSCONFDIR)/camfa/|' deploy/camfa.yaml > $(DESTDIR)$(SYSCONFDIR)/camfa/camfa.yaml
	@for f in policies/recommended/*.yaml; do \
	    t=$(DESTDIR)$(SYSCONFDIR)/camfa/policies/$$(basename $$f); \
	    test -e $$t || install -m 0644 $$f $$t; \
	done
