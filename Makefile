# SPDX-License-Identifier: MIT
# mproc - the two quick-start commands and the rest, wrapped around CMake.
#   make run       build, then the main job (mpbench --quick; a tour of the examples until then)
#   make test      install missing Debian packages (as root), build, run the whole ctest suite
#   make bench     build and run every benchmark (name<TAB>value<TAB>unit lines on stdout)
#   make sanitize  ASan+UBSan build, run the suite under it
#   make tsan      ThreadSanitizer build, run the thread-based tests under it
#   make valgrind  the whole suite under memcheck (its own tree, BUILD-valgrind)
#   make install   PREFIX=/usr/local by default: library, headers, mproc.pc, CMake package, tools,
#                  man pages (sections 1 and 3), guides in share/doc/mproc
#   make deps      install missing Debian packages (as root) and name the optional ones
#   make deps-plot also gnuplot, which mpbench --plot needs
# The build's own output goes to $(BUILD)/build.log; warnings and errors are shown. V=1 shows all.
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

.PHONY: all deps deps-plot need-deps build run tour test bench sanitize tsan valgrind install fuzz \
	clean format

# Sub-makes (CMake's generated Makefiles) would announce every directory they enter.
MAKEFLAGS += --no-print-directory

all: build

deps:
	@scripts/deps.sh --tell

deps-plot:
	@scripts/deps.sh --plot

need-deps:
	@scripts/deps.sh

# Configure and build with the tools' chatter in log files; a failure shows the log's end.
ifeq ($(V),1)
QUIET_LOG =
else
QUIET_LOG = > $(1) 2>&1 || { tail -n 60 $(1); echo "make: failed; the whole log is $(1)"; exit 1; }
endif

$(BUILD)/CMakeCache.txt:
	@mkdir -p $(BUILD)
	@echo "make: configuring $(BUILD)/ (log: $(BUILD)/configure.log)"
	@$(CMAKE) -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKEFLAGS) \
	  $(call QUIET_LOG,$(BUILD)/configure.log)

build: need-deps $(BUILD)/CMakeCache.txt
	@echo "make: building $(BUILD)/ (log: $(BUILD)/build.log)"
	@$(CMAKE) --build $(BUILD) -j $(JOBS) $(call QUIET_LOG,$(BUILD)/build.log)
	@if [ "$(V)" != 1 ]; then grep -E 'warning:|error:' $(BUILD)/build.log || true; fi

run: build
	@if [ -x $(BUILD)/tools/mpbench/mpbench ]; then \
	  $(BUILD)/tools/mpbench/mpbench --quick; \
	else \
	  scripts/tour.sh $(BUILD); \
	fi

tour: build
	@scripts/tour.sh $(BUILD)

test: build
	@cd $(BUILD) && $(CTEST) --output-on-failure -j $(JOBS)

# Build output goes to stderr: stdout carries only the figure lines.
bench:
	@$(MAKE) --no-print-directory build >&2
	@bench/run.sh $(BUILD)

sanitize: need-deps
	MP_TEST_TIMEOUT_SCALE=4 $(CMAKE) -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=Debug \
	  -DMPROC_SANITIZE=address,undefined -DMPROC_BUILD_BENCH=OFF $(CMAKEFLAGS)
	$(CMAKE) --build $(SAN_BUILD) -j $(JOBS)
	cd $(SAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(CTEST) --output-on-failure -j $(JOBS)

tsan: need-deps
	MP_TEST_TIMEOUT_SCALE=4 CC=clang $(CMAKE) -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug \
	  -DMPROC_SANITIZE=thread -DMPROC_BUILD_BENCH=OFF $(CMAKEFLAGS)
	$(CMAKE) --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && TSAN_OPTIONS=die_after_fork=0:halt_on_error=1 \
	  $(CTEST) --output-on-failure -j $(JOBS) -R $(TSAN_TESTS)

valgrind: deps
	scripts/valgrind.sh $(BUILD)

install: build
	@$(CMAKE) --install $(BUILD) --prefix $(PREFIX) $(call QUIET_LOG,$(BUILD)/install.log)
	@echo "make: installed into $(PREFIX) (files: $(BUILD)/install_manifest.txt)"
	@# A new library in /usr/local/lib is found by the dynamic loader only after ldconfig.
	@if [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null 2>&1; then ldconfig; fi

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(TSAN_BUILD) $(BUILD)-valgrind build-fuzz

format:
	git ls-files '*.c' '*.h' | xargs clang-format -i
