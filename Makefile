# Postern: one Makefile for the whole tree (docs/DESIGN.md, "Repository layout").
#   make            build commands into build/bin, daemons into build/libexec
#   make check      unit tests under ASan/UBSan, then the end-to-end suite
#   make check SANITIZE=1   the same with every program built with ASan/UBSan
#                   (in build/san/, never mixed with build/)
#   make run        start a local instance on 127.0.0.1:$(PORT) in $(RUN_DIR)
#   make stop       stop it
#   make install / uninstall / deb   see "install" at the end
CC       ?= cc
PORT     ?= 2525
RUN_DIR  ?= run
PYTHON   ?= /usr/bin/python3
PYTEST_ARGS ?=
# e2e test files run in E2E_JOBS pytest-xdist workers (a file stays in one
# worker, so module fixtures start once): the suite mostly waits on
# sockets and timers, so two workers halve it on two cores.
E2E_JOBS ?= 2

PKGS     := openssl libcares libevent libevent_openssl libpcre2-8
# The database clients of the lookup tables are compiled against but not
# linked: lib/util/dynlib.h loads each on a table's first open, so that no
# daemon pays their start-up unless it uses one. Their sonames come from
# the development libraries built against.
DL_PKGS  := libmariadb libpq sqlite3 ldap
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) $(DL_PKGS) 2>/dev/null) $(DL_SONAMES)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lcdb -lcrypt
soname = $(shell readelf -d $$($(CC) -print-file-name=lib$(1).so) 2>/dev/null | \
           sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
ifneq ($(words $(foreach l,pq mariadb ldap sqlite3,$(call soname,$(l)))),4)
$(error cannot read the sonames of libpq, libmariadb, libldap and libsqlite3 (readelf, and the -dev packages of scripts/packages.txt))
endif
DL_SONAMES := -DSONAME_PQ='"$(call soname,pq)"' -DSONAME_MARIADB='"$(call soname,mariadb)"' \
              -DSONAME_LDAP='"$(call soname,ldap)"' -DSONAME_SQLITE='"$(call soname,sqlite3)"'

WARN     := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CFLAGS   ?= -O2 -g
# lib/ has two layers (docs/DESIGN.md, "lib/ in two layers"): lib/util is
# generic and is compiled seeing only its own headers, so an include of a
# lib/mail header (configuration, queue, services) from it fails to build.
UTIL_INC := -Ilib/util
LIB_INC  := -Ilib/mail -Ilib/util
# CPPFLAGS and LDFLAGS are empty unless given (the Debian package build
# passes dpkg-buildflags' hardening flags through them).
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CPPFLAGS) $(CFLAGS) $(LIB_INC) $(PKG_CFLAGS)
# Per-object header dependencies: an edited header rebuilds what includes it.
DEPFLAGS = -MMD -MP
SAN      := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
# BUILD is the tree everything is built into. Sanitized objects get their own
# tree: mixed with plain ones they would link into programs that are half
# instrumented, and switching SANITIZE would not rebuild anything.
ifeq ($(SANITIZE),1)
BUILD    := build/san
# clang, whose ASan and UBSan share one runtime: UBSan's reports then go to
# ASan's log files too. With gcc's separate libubsan they go to stderr,
# which is /dev/null for a daemon.
SAN_CC   ?= clang
CC       := $(SAN_CC)
ALL_CFLAGS += $(SAN)
LDSAN := $(SAN)
# Linked into every program: turns LeakSanitizer off where it cannot work.
SAN_HOOKS := $(BUILD)/obj/tests/san/san_hooks.o
else
BUILD    := build
endif

# Every daemon directory that has sources; new daemons join by existing.
DAEMONS  := $(foreach d,master smtpd cleanup qmgr local pickup bounce remote virtual showq pipe spawn anvil,$(if $(wildcard $(d)/*.c),$(d)))
COMMANDS := $(basename $(notdir $(wildcard cmd/*.c)))

LIB_SRC  := $(wildcard lib/util/*.c lib/mail/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/unit/%)

all: layers $(DAEMONS:%=$(BUILD)/libexec/%) $(COMMANDS:%=$(BUILD)/bin/%)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(DEPFLAGS) -c -o $@ $<
$(BUILD)/obj/lib/util/%.o: lib/util/%.c
	@mkdir -p $(dir $@)
	$(CC) $(subst $(LIB_INC),$(UTIL_INC),$(ALL_CFLAGS)) $(DEPFLAGS) -c -o $@ $<

$(BUILD)/libpostern.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# A daemon is every .c file in its own directory.
define daemon_rule
$(BUILD)/libexec/$(1): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard $(1)/*.c)) $(SAN_HOOKS) $(BUILD)/libpostern.a
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDSAN) $$(LDFLAGS) -o $$@ $$(filter %.o,$$^) $(BUILD)/libpostern.a $$(PKG_LIBS)
endef
$(foreach d,$(DAEMONS),$(eval $(call daemon_rule,$(d))))

$(BUILD)/bin/%: $(BUILD)/obj/cmd/%.o $(SAN_HOOKS) $(BUILD)/libpostern.a
	@mkdir -p $(dir $@)
	$(CC) $(LDSAN) $(LDFLAGS) -o $@ $(filter %.o,$^) $(BUILD)/libpostern.a $(PKG_LIBS)

# Unit tests always build under ASan/UBSan, against their own copy of lib/.
UNIT_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) -O1 -g $(SAN) $(LIB_INC) $(PKG_CFLAGS)
$(BUILD)/unit/lib/%.o: lib/%.c
	@mkdir -p $(dir $@)
	$(CC) $(UNIT_CFLAGS) $(DEPFLAGS) -c -o $@ $<
$(BUILD)/unit/libpostern.a: $(LIB_SRC:lib/%.c=$(BUILD)/unit/lib/%.o)
	rm -f $@ && ar rcs $@ $^
# A unit test that includes a daemon's source file rebuilds when it changes.
$(BUILD)/unit/test_remote_reply: remote/reply.c remote/remote.h
$(BUILD)/unit/test_%: tests/unit/test_%.c $(BUILD)/unit/libpostern.a
	$(CC) $(UNIT_CFLAGS) $(DEPFLAGS) -Itests/unit -o $@ $< $(BUILD)/unit/libpostern.a $(PKG_LIBS) -lcmocka

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# A daemon includes only its own files and lib/: no path that climbs out of
# its directory (docs/DESIGN.md, "Repository layout").
layers:
	@bad=$$(grep -nE '^\s*#\s*include\s*"[^"]*(\.\./|/)' $(foreach d,$(DAEMONS) cmd lib/util lib/mail,$(d)/*.[ch]) || true); \
	    if [ -n "$$bad" ]; then echo "include outside the program's own directory and lib/:"; echo "$$bad"; exit 1; fi
	@bad=$$(grep -nE 'config_get\(\s*"' $(foreach d,$(DAEMONS) cmd lib/util lib/mail,$(d)/*.c) || true); \
	    if [ -n "$$bad" ]; then echo "a parameter read by a literal name: read its field of var (lib/mail/params.h)"; echo "$$bad"; exit 1; fi

# A parameter that params.def does not declare must not compile: this
# compiles tests/unit/undeclared_param.c, which reads one, and fails unless
# the compiler refuses it for exactly that reason.
params-check:
	@mkdir -p $(BUILD)
	@if $(CC) $(ALL_CFLAGS) -fsyntax-only tests/unit/undeclared_param.c 2>$(BUILD)/params-check.err; then \
	    echo "params-check: a parameter params.def does not declare compiled"; exit 1; fi; \
	    grep -q 'no member named.*no_such_parameter' $(BUILD)/params-check.err || \
	    { echo "params-check: refused for another reason:"; cat $(BUILD)/params-check.err; exit 1; }; \
	    echo "params-check: an undeclared parameter name does not compile"

deps:
	@sh scripts/deps.sh

unit: $(UNIT_BIN) params-check
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; \
	    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $$t; done

# The suite finds the programs under test through POSTERN_BUILD; with
# SANITIZE=1 it also fails any test during which a program wrote a sanitizer
# report (tests/README.md).
e2e: all
	POSTERN_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q -n $(E2E_JOBS) --dist loadfile \
	    tests/e2e $(PYTEST_ARGS)

# The crash storm of issue #24 at full size: 5,000 messages to local, LMTP
# and relayed destinations through a milter while a daemon is SIGKILLed every
# 0.1 s (tests/e2e/test_crash_storm.py; the suite runs 1,000). About 80 s on
# an idle 2-core machine.
crash-storm: all
	POSTERN_BUILD=$(abspath $(BUILD)) POSTERN_STORM_MESSAGES=5000 $(PYTHON) -m pytest -q -s \
	    tests/e2e/test_crash_storm.py $(PYTEST_ARGS)

check: deps
	$(PYTHON) scripts/check-tools.py
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) fuzz-check
	$(MAKE) e2e

# Block-level power cuts (tests/powercut/, tests/README.md): 500 cut points
# per file system (ext4 without and with a journal) for Postern and for
# the Debian Postfix; fails when Postern loses an acknowledged message or
# delivers a corrupt one. Needs root. POWERCUT_ARGS adds options.
powercut: all
	POSTERN_BUILD=$(abspath $(BUILD)) $(PYTHON) tests/powercut/powercut.py --cuts 500 $(POWERCUT_ARGS)

run: deps
	$(MAKE) all
	@POSTERN_BUILD=$(abspath $(BUILD)) sh scripts/run-instance.sh "$(RUN_DIR)" "$(PORT)"

stop:
	@if [ -d "$(RUN_DIR)/etc" ]; then $(BUILD)/bin/postern -c "$(abspath $(RUN_DIR))/etc" stop; fi

clean:
	rm -rf build

.PHONY: all deps unit e2e crash-storm check run stop clean layers params-check powercut
.DELETE_ON_ERROR:
# Objects are not throw-away intermediates: parallel builds share them.
.SECONDARY:

# --- install (docs/DESIGN.md, "Processes and privileges", "Packaging") ---
#   make install [DESTDIR=/scratch] [PREFIX=/usr]
#     commands in $(PREFIX)/sbin, daemons in $(PREFIX)/libexec/postern,
#     main.cf/master.cf in /etc/postern (never overwritten), the queue in
#     /var/spool/postern, the systemd unit in $(SYSTEMD_DIR). postdrop and
#     postqueue become setgid $(SETGID_GROUP) when that group exists; then
#     "postern check" as root creates mail_owner and the group if missing
#     and sets the modes (scripts/install.sh says so at the end). Without
#     DESTDIR it refuses, before writing anything, to overwrite a file a
#     Debian package owns (use make deb then).
#   make install-sendmail-links: sendmail, mailq, newaliases in /usr/sbin
#     and /usr/bin, pointing at $(PREFIX)/sbin/sendmail.
#   make uninstall [PREFIX=/usr] [PURGE=1]: removes every file the two
#     above wrote (listed in $(PREFIX)/share/postern/install-manifest);
#     keeps /etc/postern and the queue unless PURGE=1.
#   make deb: a Debian package built with debhelper from debian/, into
#     $(BUILD)/deb/ (scripts/make-deb.sh); apt install ./$(BUILD)/deb/postern_*.deb
PREFIX       ?= /usr
DESTDIR      ?=
SETGID_GROUP ?= postdrop
SYSTEMD_DIR  ?= /lib/systemd/system
PURGE        ?=

install: all
	@DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" SETGID_GROUP="$(SETGID_GROUP)" \
	    POSTERN_BUILD="$(BUILD)" SYSTEMD_DIR="$(SYSTEMD_DIR)" sh scripts/install.sh install

install-sendmail-links:
	@DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" POSTERN_BUILD="$(BUILD)" sh scripts/install.sh links

uninstall:
	@DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" PURGE="$(PURGE)" sh scripts/install.sh uninstall

deb:
	@sh scripts/make-deb.sh "$(abspath $(BUILD))/deb"

.PHONY: install install-sendmail-links uninstall deb

# --- fuzzing: libFuzzer targets in tests/fuzz (make fuzz, make fuzz-check) ---
include tests/fuzz/fuzz.mk

# --- benchmark: Postern against Postfix on this machine (bench/README.md) ---
#   make bench [BENCH_SCALE=0.5] [BENCH_RUNS=3] [BENCH_SCENARIOS=abcdefghq]
#   needs root (it runs a private Postfix instance); installs postfix if missing
bench: deps
	$(MAKE) all
	$(PYTHON) bench/bench.py
.PHONY: bench
