# lab.mk -- the body of a lab workspace's Makefile. tests/make_lab writes the
# workspace's Makefile as a few lines that name the lab (LAB, LESSON, SUITES,
# TOOLS, PROBES, THREADS) followed by everything below the "body" line.
# ---- body
# Targets:
#   make                build the lesson's programs and the tools its demos use
#   make grade          build with the sanitizers and run the lesson's tests, one
#                       line per exercise; EX=N.K runs only exercise N.K's tests,
#                       QUICK=1 only the tests of all exercises, FIRST=1 only the
#                       first test of each
#   make clean          remove what was built
CC ?= cc
CFLAGS ?= -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -g
SAN_FLAGS ?= -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -O1
TSAN_FLAGS ?= -fsanitize=thread -fno-omit-frame-pointer -O1
SAN_DIR := build/asan
TSAN_DIR := build/tsan
BUILD_JOBS ?= 2
TOOL_ARGS = PROGS='$(TOOLS)' LZ4_DIR=../$(LESSON)

.PHONY: all sanitize sanitize-thread grade clean help

all:
	@$(MAKE) --no-print-directory -C $(LESSON) CC='$(CC)' CFLAGS='$(CFLAGS)'
	@$(if $(TOOLS),$(MAKE) --no-print-directory -C tools CC='$(CC)' CFLAGS='$(CFLAGS)' $(TOOL_ARGS),true)

sanitize: $(addprefix $(SAN_DIR)/tests/,$(PROBES))
	@$(MAKE) --no-print-directory -C $(LESSON) CC='$(CC)' CFLAGS='$(CFLAGS)' \
	  EXTRA_CFLAGS='$(SAN_FLAGS)' OUT=$(CURDIR)/$(SAN_DIR)/$(LESSON)
	@$(if $(TOOLS),$(MAKE) --no-print-directory -C tools CC='$(CC)' CFLAGS='$(CFLAGS)' \
	  EXTRA_CFLAGS='$(SAN_FLAGS)' OUT=$(CURDIR)/$(SAN_DIR)/tools $(TOOL_ARGS),true)

$(SAN_DIR)/tests/%: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN_FLAGS) -o $@ $<

# ThreadSanitizer (lessons with threads): the server, and sendthread where there is one.
sanitize-thread:
	@$(if $(filter yes,$(THREADS)),$(MAKE) --no-print-directory -C $(LESSON) CC='$(CC)' \
	  CFLAGS='$(CFLAGS)' EXTRA_CFLAGS='$(TSAN_FLAGS)' OUT=$(CURDIR)/$(TSAN_DIR)/$(LESSON) \
	  $(CURDIR)/$(TSAN_DIR)/$(LESSON)/server \
	  $$(test -f $(LESSON)/sendthread.c && echo $(CURDIR)/$(TSAN_DIR)/$(LESSON)/sendthread),true)

grade:
	@tests/grade --build-jobs $(BUILD_JOBS) $(if $(EX),--exercise $(EX)) $(if $(QUICK),--quick) $(if $(FIRST),--first)

clean:
	@$(MAKE) --no-print-directory -C $(LESSON) clean
	@$(if $(TOOLS),$(MAKE) --no-print-directory -C tools clean PROGS='$(TOOLS)',true)
	rm -rf build

help:
	@sed -n 's/^#   //p' Makefile
