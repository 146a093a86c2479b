# ladle — `make` builds build/ladle; `make check` runs every test, then again
# under AddressSanitizer + UndefinedBehaviorSanitizer.
CC      ?= cc
# -ffp-contract=off: no fused multiply-add, so the kernels round exactly as
# the fp32 reference math (numpy/PyTorch) does, on every compiler and CPU.
# -fno-trapping-math: ladle never reads floating-point exception flags, so
# GCC may turn a float compare-and-select into a vector blend (it changes
# no result; without it the merge kernels stay scalar).
# -fno-math-errno: ladle never reads errno after a math call, so sqrt can be
# a vector instruction (the same correctly rounded result).
# CFLAGS is the user's (optimisation, sanitizers); REQ_CFLAGS always apply.
CFLAGS  ?= -O3 -g
# -fPIC: the same objects make libladle.a and libladle.so.
REQ_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra \
              -ffp-contract=off -fno-trapping-math -fno-math-errno -fPIC -Iinclude -Isrc/core -MMD -MP
LDLIBS  += -ljansson -lyaml -llapacke -llapack -lblas -lpthread -lm
BUILD   ?= build
# make install: PREFIX, DESTDIR and LIBDIR as usual.
PREFIX  ?= /usr/local
LIBDIR  ?= $(PREFIX)/lib
VERSION := $(shell sed -n 's/^\#define LADLE_VERSION "\(.*\)"/\1/p' include/ladle.h)
SONAME  := libladle.so.0

LIB_SRC := $(wildcard src/core/*.c src/linalg/*.c src/formats/*.c src/engine/*.c src/methods/*.c \
                      src/recipe/*.c src/eval/*.c src/search/*.c)
CLI_SRC := $(wildcard src/cli/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
UNIT    := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_*.c))
# Fuzz targets: libFuzzer binaries under `make fuzz`, and in every build a
# replay driver that runs each over its seed corpus and kept regressions.
FUZZ_TARGETS := safetensors index recipe journal structure tokenizer torch gguf
REPLAY  := $(FUZZ_TARGETS:%=$(BUILD)/tests/replay_%)

.PHONY: all test check sanitize warnings bench clean fuzz fuzz-build install
all: $(BUILD)/ladle $(BUILD)/libladle.so $(BUILD)/ladle.1 $(BUILD)/ladle.pc $(UNIT) $(REPLAY)

$(BUILD)/ladle: $(CLI_OBJ) $(BUILD)/libladle.a
	$(CC) $(CFLAGS) $(REQ_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# (made afresh: ar would keep the members of sources since removed)
$(BUILD)/libladle.a: $(LIB_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

# The shared library (the Python package loads it): the same objects.
$(BUILD)/libladle.so: $(LIB_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -shared -Wl,-soname,$(SONAME) -o $@ $^ $(LDLIBS)

# ladle(1), made from the commands' own --help.
$(BUILD)/ladle.1: $(BUILD)/ladle tools/make-man.sh
	./tools/make-man.sh $(BUILD)/ladle > $@.tmp && mv $@.tmp $@

$(BUILD)/ladle.pc: Makefile include/ladle.h
	@mkdir -p $(dir $@)
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$${prefix}/include' '' \
	    'Name: ladle' 'Description: weight-space model merging' 'Version: $(VERSION)' \
	    'Requires.private: jansson yaml-0.1 lapacke' 'Libs: -L$${libdir} -lladle' \
	    'Libs.private: -llapack -lblas -lpthread -lm' 'Cflags: -I$${includedir}' > $@

install: $(BUILD)/ladle $(BUILD)/libladle.so $(BUILD)/libladle.a $(BUILD)/ladle.1 $(BUILD)/ladle.pc
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(LIBDIR)/pkgconfig \
	    $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(BUILD)/ladle $(DESTDIR)$(PREFIX)/bin/ladle
	install -m 755 $(BUILD)/libladle.so $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libladle.so
	install -m 644 $(BUILD)/libladle.a $(DESTDIR)$(LIBDIR)/libladle.a
	install -m 644 include/ladle.h $(DESTDIR)$(PREFIX)/include/ladle.h
	install -m 644 $(BUILD)/ladle.pc $(DESTDIR)$(LIBDIR)/pkgconfig/ladle.pc
	install -m 644 $(BUILD)/ladle.1 $(DESTDIR)$(PREFIX)/share/man/man1/ladle.1

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(REQ_CFLAGS) -c -o $@ $<

# (the headers a test includes are prerequisites too, from its .d file)
$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libladle.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(REQ_CFLAGS) -o $@ $(filter %.c %.a,$^) $(LDLIBS)

$(BUILD)/tests/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(BUILD)/libladle.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(REQ_CFLAGS) -Isrc/recipe -o $@ $^ $(LDLIBS)

# Unit tests (C), then the reference tests (Python: numpy/PyTorch).
test: all
	LADLE=$(abspath $(BUILD)/ladle) UNIT_DIR=$(abspath $(BUILD)/tests) \
	LADLE_SANITIZED=$(LADLE_SANITIZED) ./tests/run

# Warning-free under gcc and clang, the suite, then the suite again with
# ASan+UBSan in build-san/.
check: warnings test sanitize

warnings:
	$(MAKE) -s BUILD=build-gcc-werror CC=gcc CFLAGS="-O2 -Werror" all
	$(MAKE) -s BUILD=build-clang-werror CC=clang CFLAGS="-O2 -Werror" all

sanitize:
	$(MAKE) BUILD=build-san LADLE_SANITIZED=1 \
	    CFLAGS="-O1 -g -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer \
	           -fno-sanitize-recover=all" test

# Coverage-guided fuzzing (clang's libFuzzer, ASan+UBSan): FUZZ_SECONDS per
# target (default 60), from the checked-in seeds; findings land in
# build-fuzz/findings/. See tools/fuzz.sh.
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
fuzz-build:
	$(MAKE) -s BUILD=build-fuzz CC=clang CFLAGS="-O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link" \
	    build-fuzz/libladle.a
	@for t in $(FUZZ_TARGETS); do \
	    clang -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer $(REQ_CFLAGS) -Isrc/recipe -MF /dev/null \
	        -o build-fuzz/fuzz_$$t tests/fuzz/fuzz_$$t.c build-fuzz/libladle.a $(LDLIBS) || exit 1; \
	done

fuzz: fuzz-build
	./tools/fuzz.sh $(FUZZ_TARGETS)

bench: all
	./bench/run

clean:
	rm -rf build build-san build-gcc-werror build-clang-werror build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(UNIT:=.d)
