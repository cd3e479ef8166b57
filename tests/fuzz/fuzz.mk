# tests/fuzz/fuzz.mk - libFuzzer targets (tests/fuzz/README.md), included at
# the end of the root Makefile.
#
#   make fuzz [FUZZ_SECONDS=N] [FUZZ_TARGETS="address record"]
#       build every target and fuzz each for N seconds (default 60)
#   make fuzz-check
#       build every target, replay its committed corpus (regression cases
#       included), then fuzz it briefly (FUZZ_CHECK_SECONDS each): for CI
#
# Targets are tests/fuzz/fuzz_NAME.c; their committed seeds and regression
# inputs are tests/fuzz/corpus/NAME/. lib/ is compiled again here with clang
# and the fuzzer's coverage instrumentation plus ASan/UBSan (build/fuzz/).
# New inputs found while fuzzing go to build/fuzz/work/NAME/, never into the
# committed corpus; crashes to build/fuzz/artifacts/.
#
# A target that needs sources outside lib/ (a daemon's parser in its own
# file) names them in FUZZ_EXTRA_NAME; it is left out, not broken, while
# those sources do not exist.

FUZZ_CC            ?= clang
FUZZ_SECONDS       ?= 60
FUZZ_CHECK_SECONDS ?= 1
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
               -fno-omit-frame-pointer
FUZZ_CFLAGS  = -std=c11 -D_GNU_SOURCE $(WARN) -O1 -g $(FUZZ_SAN) $(LIB_INC) $(PKG_CFLAGS)
# libFuzzer options for every run: a slow input (10 s) or 2 GB of memory
# is a finding too; leaks are (ASan's default).
FUZZ_OPTS   := -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
# Targets that write files (main.cf, tables, logs) run much faster on tmpfs.
FUZZ_TMPDIR ?= $(if $(wildcard /dev/shm),/dev/shm,/tmp)

# Daemon sources some targets compile in (not linked into libpostern), and
# the include directories they need.
FUZZ_EXTRA_remote_reply := remote/reply.c
FUZZ_CFLAGS_remote_reply := -Iremote
FUZZ_EXTRA_remote_nexthop := remote/route.c
FUZZ_CFLAGS_remote_nexthop := -Iremote
FUZZ_EXTRA_remote_tls_policy := remote/tls_policy.c
FUZZ_CFLAGS_remote_tls_policy := -Iremote
FUZZ_EXTRA_cleanup_header := cleanup/headers.c cleanup/checks.c cleanup/rcpt.c cleanup/local.c \
                             cleanup/output.c
FUZZ_CFLAGS_cleanup_header := -Icleanup
FUZZ_EXTRA_smtpd_command := smtpd/parse.c
FUZZ_CFLAGS_smtpd_command := -Ismtpd
FUZZ_EXTRA_pipe_args := pipe/argv.c
FUZZ_CFLAGS_pipe_args := -Ipipe

FUZZ_ALL     := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_READY   := $(foreach t,$(FUZZ_ALL),$(if $(filter-out $(wildcard $(FUZZ_EXTRA_$(t))),$(FUZZ_EXTRA_$(t))),,$(t)))
FUZZ_TARGETS ?= $(FUZZ_READY)
FUZZ_BIN     := $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)

# lib/ objects depend on lib/*.h only, so that headers edited elsewhere in
# the tree do not rebuild them; a daemon's source also on its own headers.
$(LIB_SRC:%.c=build/fuzz/obj/%.o): build/fuzz/obj/%.o: %.c $(wildcard lib/*/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

build/fuzz/libpostern.a: $(LIB_SRC:%.c=build/fuzz/obj/%.o)
	rm -f $@ && ar rcs $@ $^

# One target: its own file comes first on the link line, so a target that
# #includes a lib/ .c file (to reach its static functions) wins over the
# archive's copy; then the objects of its FUZZ_EXTRA sources.
define fuzz_target_rule
FUZZ_OBJ_$(1) := $$(patsubst %.c,build/fuzz/obj/%.o,$$(FUZZ_EXTRA_$(1)))
$$(FUZZ_OBJ_$(1)): build/fuzz/obj/%.o: %.c $$(wildcard lib/*/*.h) $$(wildcard $$(dir $$(firstword $$(FUZZ_EXTRA_$(1))))*.h)
	@mkdir -p $$(dir $$@)
	$$(FUZZ_CC) $$(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $$@ $$<
build/fuzz/fuzz_$(1): tests/fuzz/fuzz_$(1).c tests/fuzz/fuzz.h build/fuzz/libpostern.a $$(FUZZ_OBJ_$(1))
	$$(FUZZ_CC) $$(FUZZ_CFLAGS) $$(FUZZ_CFLAGS_$(1)) -Itests/fuzz -fsanitize=fuzzer -o $$@ $$< \
	    $$(FUZZ_OBJ_$(1)) build/fuzz/libpostern.a $$(PKG_LIBS)
endef
$(foreach t,$(FUZZ_READY),$(eval $(call fuzz_target_rule,$(t))))

fuzz-build: $(FUZZ_BIN)

# One target: its work dir first (libFuzzer writes new inputs to the first
# directory only), the committed corpus after it.
fuzz_run = mkdir -p build/fuzz/work/$(1) build/fuzz/artifacts tests/fuzz/corpus/$(1) && \
    echo "== fuzz $(1) ($(2) s)" && \
    TMPDIR=$(FUZZ_TMPDIR) build/fuzz/fuzz_$(1) $(FUZZ_OPTS) -max_total_time=$(2) \
        -artifact_prefix=build/fuzz/artifacts/$(1)- \
        $(if $(wildcard tests/fuzz/dict/$(1).dict),-dict=tests/fuzz/dict/$(1).dict) \
        build/fuzz/work/$(1) tests/fuzz/corpus/$(1) 2>build/fuzz/work/$(1).log \
    || { tail -60 build/fuzz/work/$(1).log; exit 1; }; \
    grep -E '^(stat::number_of_executed_units|Done)' build/fuzz/work/$(1).log | tr '\n' ' '; echo

# Replay the committed corpus alone (-runs=0): every regression input.
fuzz_replay = echo "== replay $(1)" && \
    TMPDIR=$(FUZZ_TMPDIR) build/fuzz/fuzz_$(1) $(FUZZ_OPTS) -runs=0 tests/fuzz/corpus/$(1) \
        2>build/fuzz/work/$(1).replay.log \
    || { tail -60 build/fuzz/work/$(1).replay.log; exit 1; }

fuzz: fuzz-build
	@set -e; $(foreach t,$(FUZZ_TARGETS),$(call fuzz_run,$(t),$(FUZZ_SECONDS));)

fuzz-check: fuzz-build
	@set -e; mkdir -p build/fuzz/work; \
	    $(foreach t,$(FUZZ_TARGETS),$(call fuzz_replay,$(t)); $(call fuzz_run,$(t),$(FUZZ_CHECK_SECONDS));)

.PHONY: fuzz fuzz-build fuzz-check
