# mailroom: one non-recursive GNU Makefile.
#
#   make            build build/mailroom (warnings are errors)
#   make test       install missing Debian packages, then unit tests (plain and
#                   ASan+UBSan), end-to-end tests (plain; the protocol suites
#                   also against the ASan+UBSan server; the containment tests
#                   also without openat2) and short bounded fuzz runs
#   make fuzz       long libFuzzer runs of every tests/fuzz/fuzz_*.c
#   make soak       mixed load with faults for SOAK_SECONDS (default 1800)
#   make bench      mailroom vs Dovecot side by side (QUICK=1: short run)
#   make bench-parts per-module benchmarks under bench/*/ (print figures)
#   make run        build, create a demo DATA folder and start the server
#   make clean
#
# Sources are found by wildcard: every src/*/*.c except src/cli/ goes into
# the library that the binary, the unit tests and the fuzz targets link.
# A unit test tests/unit/test_NAME.c becomes build/tests/test_NAME.

SHELL    := /bin/bash
CC       ?= gcc
PKGS     := sqlite3 libxcrypt libevent libevent_openssl libevent_pthreads openssl zlib
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wpointer-arith -Wformat=2 -Wcast-qual -Werror
CFLAGS   ?= -O2 -g
ALL_CFLAGS = -std=gnu11 $(WARN) $(CFLAGS) -Isrc -D_GNU_SOURCE \
             $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIBS      = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread
SAN       := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

LIB_SRC  := $(sort $(filter-out src/cli/%,$(wildcard src/*/*.c)))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

# Two build trees: build/ (normal) and build/asan/ (sanitizers).
obj      = $(patsubst %.c,build/obj/%.o,$(1))
aobj     = $(patsubst %.c,build/asan/obj/%.o,$(1))
LIB_OBJ  := $(call obj,$(LIB_SRC))
CLI_OBJ  := $(call obj,$(CLI_SRC))
ALIB_OBJ := $(call aobj,$(LIB_SRC))
ACLI_OBJ := $(call aobj,$(CLI_SRC))
UNITS    := $(patsubst tests/unit/%.c,build/tests/%,$(UNIT_SRC))
AUNITS   := $(patsubst tests/unit/%.c,build/asan/tests/%,$(UNIT_SRC))
FUZZERS  := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRC))

PYTEST   := /usr/bin/python3 -m pytest
FUZZ_SECONDS ?= 60

.SECONDARY:
.PHONY: all test check unit unit-asan e2e e2e-asan e2e-no-openat2 crash-full fuzz fuzz-short bench bench-parts run clean deps soak soak-short
all: build/mailroom

build/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@
build/asan/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN) -MMD -MP -c $< -o $@

build/libmailroom.a: $(LIB_OBJ)
	@rm -f $@; ar rcs $@ $^
build/asan/libmailroom.a: $(ALIB_OBJ)
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $^

build/mailroom: $(CLI_OBJ) build/libmailroom.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) build/libmailroom.a $(LIBS)
build/asan/mailroom: $(ACLI_OBJ) build/asan/libmailroom.a
	$(CC) $(CFLAGS) $(SAN) -o $@ $(ACLI_OBJ) build/asan/libmailroom.a $(LIBS)

build/tests/%: build/obj/tests/unit/%.o build/libmailroom.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< build/libmailroom.a $(LIBS) -lcmocka
build/asan/tests/%: build/asan/obj/tests/unit/%.o build/asan/libmailroom.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -o $@ $< build/asan/libmailroom.a $(LIBS) -lcmocka

# Fuzz targets: clang + libFuzzer. The library is compiled once for all of
# them (instrumented, without libFuzzer's main), each target links it.
FUZZ_CFLAGS := -std=gnu11 -g -O1 -Isrc -D_GNU_SOURCE -DFUZZING
FUZZ_OBJ := $(patsubst %.c,build/fuzzlib/obj/%.o,$(LIB_SRC))
build/fuzzlib/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -MMD -MP -c $< -o $@
build/fuzzlib/libmailroom.a: $(FUZZ_OBJ)
	@rm -f $@; ar rcs $@ $^
build/fuzz/%: tests/fuzz/%.c build/fuzzlib/libmailroom.a
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -MMD -MP $< build/fuzzlib/libmailroom.a \
	  -o $@ $(LIBS)

# The power-cut simulation's LD_PRELOAD logger (tests/e2e/test_powercut.py).
build/pclog.so: tests/powercut/pclog.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 $(WARN) $(CFLAGS) -D_GNU_SOURCE -fPIC -shared -o $@ $< -ldl

deps:
	@scripts/deps.sh test

# `make test` first installs what is missing, then re-reads this Makefile
# (pkg-config flags are only right once the -dev packages are there).
test:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory check

check: build/mailroom build/asan/mailroom unit unit-asan e2e e2e-asan e2e-no-openat2 fuzz-short soak-short

unit: $(UNITS)
	@set -e; for t in $(UNITS); do echo "== $$t"; $$t; done
	@echo "== build/tests/test_lib (MAILROOM_TEST_NO_OPENAT2=1: the fallback walk)"
	@MAILROOM_TEST_NO_OPENAT2=1 build/tests/test_lib
unit-asan: $(AUNITS)
	@set -e; for t in $(AUNITS); do echo "== $$t (asan+ubsan)"; \
	  ASAN_OPTIONS=detect_leaks=1 $$t; done
# The e2e suite runs on two pytest-xdist workers, a file per worker at a time
# (each test has its own ports and temp folders), except the files that
# measure time, memory or kill points, or fill a disk: they run alone after.
E2E_SERIAL := test_imap_idle_scale test_client_limits test_hostile test_crash_ops \
	test_durability_order test_powercut test_full_disk test_store_concurrency
e2e: build/mailroom build/asan/mailroom build/pclog.so
	MAILROOM=$(CURDIR)/build/mailroom $(PYTEST) -q -n 2 --dist loadfile \
	  $(patsubst %,--ignore=tests/e2e/%.py,$(E2E_SERIAL)) tests/e2e
	MAILROOM=$(CURDIR)/build/mailroom $(PYTEST) -q $(patsubst %,tests/e2e/%.py,$(E2E_SERIAL))

# The protocol suites once more against the ASan+UBSan build. Reports go to
# files under SAN_LOGS (world-writable: workers run as run_user); conftest.py
# fails the test during which one appeared, or the run for one written
# outside any test (SAN_LOGS/session/). quarantine_size_mb=8: the suites bound
# the workers' peak RSS, and ASan's default 256 MB quarantine of freed memory
# would count as the server's.
E2E_ASAN := test_hostile test_imap_session test_lmtp test_lmtp_results test_pop3 test_isolation
SAN_LOGS := $(CURDIR)/build/asan/e2e-logs
e2e-asan: build/asan/mailroom
	@rm -rf $(SAN_LOGS); mkdir -p $(SAN_LOGS)/session; chmod -R 1777 $(SAN_LOGS)
	MAILROOM=$(CURDIR)/build/asan/mailroom MAILROOM_SANITIZER_LOGS=$(SAN_LOGS) \
	ASAN_OPTIONS=detect_leaks=1:quarantine_size_mb=8:log_path=$(SAN_LOGS)/session/asan \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(SAN_LOGS)/session/ubsan \
	$(PYTEST) -q $(patsubst %,tests/e2e/%.py,$(E2E_ASAN))

# The containment tests once more with openat2 switched off (src/lib/fsx.c:
# the component-by-component walk that kernels before 5.6 get).
E2E_CONTAIN := test_isolation test_cli
e2e-no-openat2: build/mailroom
	MAILROOM_TEST_NO_OPENAT2=1 MAILROOM=$(CURDIR)/build/mailroom \
	$(PYTEST) -q $(patsubst %,tests/e2e/%.py,$(E2E_CONTAIN))

# Every kill point of tests/e2e/test_crash_ops.py (`make e2e` runs a sample).
crash-full: build/mailroom
	CRASH_FULL=1 MAILROOM=$(CURDIR)/build/mailroom $(PYTEST) -q -rx tests/e2e/test_crash_ops.py

# tests/soak/soak.py: a bounded mixed load with faults against a real server
# (IMAP, POP3, LMTP, deliver; worker kills, SIGHUP, a deleted index); fails on
# a lost message, a protocol error or growth of RSS, descriptors or log.
SOAK_SECONDS ?= 1800
soak: build/mailroom
	SOAK_SECONDS=$(SOAK_SECONDS) MAILROOM=$(CURDIR)/build/mailroom /usr/bin/python3 tests/soak/soak.py
soak-short: build/mailroom
	SOAK_SECONDS=120 MAILROOM=$(CURDIR)/build/mailroom /usr/bin/python3 tests/soak/soak.py

# In `make test` each target runs briefly: 60 s for the message parser
# (issue 3 asks for it), 30 s for the IMAP parser, 15 s for the small ones.
# `make fuzz` runs each for FUZZ_SECONDS.
fuzz-short: $(FUZZERS)
	@set -e; for f in $(FUZZERS); do n=$$(basename $$f); \
	  mkdir -p build/fuzz/corpus/$$n; \
	  t=$(FUZZ_SHORT_SECONDS); if [ -z "$$t" ]; then case $$n in \
	    fuzz_mime) t=60;; fuzz_imap_parser) t=30;; *) t=15;; esac; fi; \
	  echo "== $$n ($${t}s)"; \
	  $$f -max_total_time=$$t -rss_limit_mb=2048 \
	      build/fuzz/corpus/$$n $$([ -d tests/fuzz/seeds/$$n ] && echo tests/fuzz/seeds/$$n) 2>&1 | tail -n 3; \
	  test $${PIPESTATUS[0]} -eq 0; done
FUZZ_SHORT_SECONDS ?=
fuzz:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory fuzz-short FUZZ_SHORT_SECONDS=$(FUZZ_SECONDS)

# make bench: mailroom and Dovecot side by side, one table of ratios (about
# 10 minutes; QUICK=1: about 2). make bench-parts: the per-module figures
# (store, mime, imap, lmtp) that bench/*/README.md describe.
QUICK ?=
bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory build/mailroom
	@QUICK=$(QUICK) bench/compare/run

bench-parts:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory build/mailroom
	@set -e; for b in bench/store/run bench/mime/run bench/imap/run bench/lmtp/run bench/import/run; do echo "== $$b"; $$b; done

# make bench-import: `mailroom import` of a 100,000-message maildir (QUICK=1:
# 10,000): messages/s, bytes written, index size; bench/import/run says how.
.PHONY: bench-import
bench-import:
	@$(MAKE) --no-print-directory build/mailroom
	@QUICK=$(QUICK) bench/import/run

run:
	@scripts/deps.sh run
	@$(MAKE) --no-print-directory build/mailroom
	@scripts/run-demo.sh

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
