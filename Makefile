# Top-level Makefile: build a lesson and point ./run at it, run the tests,
# run the benchmarks. `make help` lists the targets.
CC ?= cc
CFLAGS ?= -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -g
# The sanitizer build that `make test` runs the suites against.
SAN_FLAGS ?= -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -O1
SAN_DIR := build/asan
# ThreadSanitizer, for the lessons with threads (6 onwards).
TSAN_FLAGS ?= -fsanitize=thread -fno-omit-frame-pointer -O1
TSAN_DIR := build/tsan

LESSONS := $(sort $(patsubst %/Makefile,%,$(wildcard [0-9][0-9]_*/Makefile)))
LESSON_NUMBERS := $(foreach l,$(LESSONS),$(shell echo $(l) | sed 's/^0*\([0-9]*\)_.*/\1/'))
lesson_dir = $(filter $(shell printf %02d $(1))_%,$(LESSONS))

BATS_VERSION := 1.11.1

.PHONY: all help test bench fuzz mutants clean tools sanitize sanitize-thread labs grade $(addprefix lesson-,$(LESSON_NUMBERS)) sanitize

all: tools
	@for d in $(LESSONS); do $(MAKE) --no-print-directory -C $$d CC='$(CC)' CFLAGS='$(CFLAGS)' || exit 1; done

help:
	@echo "make lesson-N   build lesson N and make ./run start its demo (N = $(LESSON_NUMBERS))"
	@echo "make all        build every lesson and tool"
	@echo "make test       build normally and with ASan+UBSan, run every test suite"
	@echo "make bench      run the benchmarks and print their tables"
	@echo "make mutants    remove one taught mechanism at a time, expect a red suite (slow; MUTANTS=name)"
	@echo "make fuzz       run the libFuzzer harnesses (FUZZ_SECONDS=60 each, needs clang)"
	@echo "make lab-N DEST=DIR  write lab N: lesson N with the parts a student writes taken out"
	@echo "make labs DEST=DIR   every lab, as DIR/lab1 ... (tests/make_lab --list names the exercises)"
	@echo "make grade LAB=DIR   grade a student's lab workspace with this repository's tests"
	@echo "make clean      remove everything that was built"

tools:
	@$(MAKE) --no-print-directory -C tools CC='$(CC)' CFLAGS='$(CFLAGS)'

# lesson-N: build lesson N (and the tools its demo uses), remember it for ./run.
$(addprefix lesson-,$(LESSON_NUMBERS)): lesson-%: tools
	@dir='$(call lesson_dir,$*)'; \
	if [ -z "$$dir" ]; then echo "no lesson $* here (lessons: $(LESSON_NUMBERS))" >&2; exit 2; fi; \
	$(MAKE) --no-print-directory -C $$dir CC='$(CC)' CFLAGS='$(CFLAGS)' && \
	echo "$$dir" > .current-lesson && \
	echo "lesson $* ($$dir) is built: type ./run (or ./run --help)"

sanitize:
	@for d in $(LESSONS) tools; do \
	  $(MAKE) --no-print-directory -C $$d CC='$(CC)' CFLAGS='$(CFLAGS)' \
	    EXTRA_CFLAGS='$(SAN_FLAGS)' OUT=$(CURDIR)/$(SAN_DIR)/$$d || exit 1; done

# C probes the test suites run (tests/*.c), built with the sanitizer build
# only: make lesson-N does not build them, so the texts' build transcripts
# do not show them.
TEST_PROBES := $(patsubst tests/%.c,$(SAN_DIR)/tests/%,$(wildcard tests/*.c))
sanitize: $(TEST_PROBES)
$(SAN_DIR)/tests/%: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN_FLAGS) -o $@ $<

# ThreadSanitizer cannot be combined with ASan: a separate build, of the
# programs with threads (the server, and lesson 6's sendthread where it is).
sanitize-thread:
	@for d in $(filter-out 01_% 02_% 03_% 04_% 05_%,$(LESSONS)); do \
	  $(MAKE) --no-print-directory -C $$d CC='$(CC)' CFLAGS='$(CFLAGS)' \
	    EXTRA_CFLAGS='$(TSAN_FLAGS)' OUT=$(CURDIR)/$(TSAN_DIR)/$$d \
	    $(CURDIR)/$(TSAN_DIR)/$$d/server \
	    $$(test -f $$d/sendthread.c && echo $(CURDIR)/$(TSAN_DIR)/$$d/sendthread) || exit 1; done

# TEST_JOBS: suite files run at once (tests wait on sockets and timers far
# more than they compute; 2 suits a 2-core machine). BUILD_JOBS: the three
# builds the suites need, compiled BUILD_JOBS programs at a time (on 2 cores,
# 2 takes about 60 s where one at a time takes about 115).
TEST_JOBS ?= 2
BUILD_JOBS ?= 2
test:
	@$(MAKE) --no-print-directory -j$(BUILD_JOBS) all sanitize sanitize-thread
	@TSAN_ROOT=$(CURDIR)/$(TSAN_DIR) tests/run_suites --bats-version $(BATS_VERSION) \
	  --jobs $(TEST_JOBS) --bin $(SAN_DIR) $(SUITE)

# mutants: every mutant in tests/mutants must turn its suites red (tests/run_mutants).
MUTANT_JOBS ?= 2
mutants: all sanitize sanitize-thread
	@tests/run_mutants --jobs $(MUTANT_JOBS) $(MUTANTS)

bench: all
	@tools/bench

# fuzz: run every libFuzzer harness in fuzz/ for FUZZ_SECONDS (default 60) each.
fuzz:
	@$(MAKE) --no-print-directory -C fuzz run

# Classroom labs (tests/make_lab; lessons/README.md, "For teachers").
lab-%:
	@tests/make_lab '$*' '$(DEST)'
labs:
	@tests/make_lab --all '$(DEST)'
grade:
	@tests/make_lab --grade '$(LAB)'

clean:
	@for d in $(LESSONS) tools; do $(MAKE) --no-print-directory -C $$d clean; done
	rm -rf build .current-lesson

lesson-%:
	@echo "no lesson $* here (lessons: $(LESSON_NUMBERS))" >&2; exit 2
