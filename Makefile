# mproc - the two quick-start commands and the rest, wrapped around CMake.
#   make run       build, then the main job (mpbench --quick; a tour of the examples until then)
#   make test      install missing Debian packages (as root), build, run the whole ctest suite
#   make bench     build and run every benchmark (name<TAB>value<TAB>unit lines on stdout)
#   make sanitize  ASan+UBSan build, run the suite under it
#   make install   PREFIX=/usr/local by default
BUILD    ?= build
PREFIX   ?= /usr/local
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE    ?= cmake
CTEST    ?= ctest
CMAKEFLAGS ?=
SAN_BUILD ?= build-asan

.PHONY: all deps build run tour test bench sanitize install fuzz clean format

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

bench: build
	@bench/run.sh $(BUILD)

sanitize: deps
	MP_TEST_TIMEOUT_SCALE=4 $(CMAKE) -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=Debug \
	  -DMPROC_SANITIZE=address,undefined -DMPROC_BUILD_BENCH=OFF $(CMAKEFLAGS)
	$(CMAKE) --build $(SAN_BUILD) -j $(JOBS)
	cd $(SAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(CTEST) --output-on-failure -j $(JOBS)

install: build
	$(CMAKE) --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(SAN_BUILD) build-fuzz

format:
	git ls-files '*.c' '*.h' | xargs clang-format -i
