# SPDX-License-Identifier: MIT
# mproc - the two quick-start commands and the rest, wrapped around CMake.
#   make run       build, then the main job (mpbench --quick; a tour of the examples until then)
#   make test      install missing Debian packages (as root), build, run the whole ctest suite
#   make bench     build and run every benchmark (name<TAB>value<TAB>unit lines on stdout)
#   make sanitize  ASan+UBSan build, run the suite under it
#   make tsan      ThreadSanitizer build, run the thread-based tests under it
#   make valgrind  the tests valgrind can follow, under memcheck
#   make install   PREFIX=/usr/local by default
BUILD    ?= build
PREFIX   ?= /usr/local
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE    ?= cmake
CTEST    ?= ctest
CMAKEFLAGS ?=
SAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
# ThreadSanitizer models threads of one process; it cannot follow a mutex or futex shared between
# processes (it reports every cross-process unlock), so it runs the tests whose concurrency is
# threads: processes, the pool (its supervisor thread), signals, sockets.
TSAN_TESTS ?= 'test_(process|pool|signals|socket|error|leakguard)|example_(pool|process|signals|double_fork|file_copy)'

.PHONY: all deps build run tour test bench sanitize tsan valgrind install fuzz clean format

all: build

deps:
	@scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	$(CMAKE) -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKEFLAGS)

build: deps $(BUILD)/CMakeCache.txt
	$(CMAKE) --build $(BUILD) -j $(JOBS)

run: build
	@if [ -x $(BUILD)/tools/mpbench/mpbench ]; then \
	  $(BUILD)/tools/mpbench/mpbench --quick; \
	else \
	  scripts/tour.sh $(BUILD); \
	fi

tour: build
	@scripts/tour.sh $(BUILD)

test: build
	cd $(BUILD) && $(CTEST) --output-on-failure -j $(JOBS)

# Build output goes to stderr: stdout carries only the figure lines.
bench:
	@$(MAKE) --no-print-directory build >&2
	@bench/run.sh $(BUILD)

sanitize: deps
	MP_TEST_TIMEOUT_SCALE=4 $(CMAKE) -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=Debug \
	  -DMPROC_SANITIZE=address,undefined -DMPROC_BUILD_BENCH=OFF $(CMAKEFLAGS)
	$(CMAKE) --build $(SAN_BUILD) -j $(JOBS)
	cd $(SAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(CTEST) --output-on-failure -j $(JOBS)

tsan: deps
	MP_TEST_TIMEOUT_SCALE=4 CC=clang $(CMAKE) -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug \
	  -DMPROC_SANITIZE=thread -DMPROC_BUILD_BENCH=OFF $(CMAKEFLAGS)
	$(CMAKE) --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && TSAN_OPTIONS=die_after_fork=0:halt_on_error=1 \
	  $(CTEST) --output-on-failure -j $(JOBS) -R $(TSAN_TESTS)

valgrind: build
	scripts/valgrind.sh $(BUILD)

install: build
	$(CMAKE) --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(TSAN_BUILD) build-fuzz

format:
	git ls-files '*.c' '*.h' | xargs clang-format -i
