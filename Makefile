# timirec build. `make` builds bin/timirec (CPU always; CUDA part when nvcc is on the PATH),
# `make test` runs every test program, `make asan` runs the suite under ASan+UBSan,
# `make bench` runs the benchmarks, `make run` the README's main job.

ifeq ($(origin CC),default)
  CC := gcc
endif
BUILD   ?= build
BIN     ?= bin
OPT     ?= -O2
CFLAGS  ?=
SANITIZE ?=
CUDA    ?= auto

BASE_CFLAGS := -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Werror -fopenmp -Iinclude $(SANITIZE)
LDLIBS  := -lm
LDFLAGS := -fopenmp $(SANITIZE)

LIB_SRC  := $(filter-out src/main.c,$(wildcard src/*.c src/cpu/*.c))
LIB_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC))
MAIN_OBJ := $(BUILD)/src/main.o
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
BENCH_SRC := $(wildcard bench/bench_*.c)
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

# ---- CUDA detection: compile and link kernels/ when nvcc exists (and CUDA != 0). -----------
NVCC := $(shell command -v nvcc 2>/dev/null)
ifeq ($(CUDA),0)
  NVCC :=
endif
CUDA_OFF_WHY := nvcc not found or CUDA=0
ifneq ($(SANITIZE),)
  NVCC :=
  CUDA_OFF_WHY := sanitizer build
endif
CUDA_ARCH ?= sm_90
ifneq ($(NVCC),)
  CUDA_HOME := $(patsubst %/bin/nvcc,%,$(NVCC))
  CU_SRC := $(wildcard kernels/*.cu)
  CU_OBJ := $(patsubst %.cu,$(BUILD)/%.o,$(CU_SRC))
  NVCCFLAGS := -O2 -std=c++17 -arch=$(CUDA_ARCH) -Iinclude -Xcompiler -Wall,-Werror
  CUDA_LIBS := -L$(CUDA_HOME)/lib64 -lcudart_static -lstdc++ -ldl -lrt -lpthread
  BASE_CFLAGS += -DTIMIREC_CUDA=1
  CUDA_NOTE := CUDA: nvcc found at $(NVCC) ($(shell $(NVCC) --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')); building kernels/ for $(CUDA_ARCH) and linking the CUDA backend
else
  CU_OBJ :=
  CUDA_LIBS :=
  CUDA_NOTE := CUDA: skipped kernels/ ($(CUDA_OFF_WHY)); building the CPU backend only
endif

.PHONY: all test asan bench run clean cuda-note gpu-check
all: cuda-note $(BIN)/timirec

cuda-note:
	@echo "$(CUDA_NOTE)"

$(BIN)/timirec: $(MAIN_OBJ) $(BUILD)/libtimirec.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CUDA_LIBS)

$(BUILD)/libtimirec.a: $(LIB_OBJ) $(CU_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/kernels/%.o: kernels/%.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/%.c $(BUILD)/libtimirec.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -Itests -MMD -MP -o $@ $< $(BUILD)/libtimirec.a $(LDFLAGS) $(LDLIBS) $(CUDA_LIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libtimirec.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -MMD -MP -o $@ $< $(BUILD)/libtimirec.a $(LDFLAGS) $(LDLIBS) $(CUDA_LIBS)

test: all $(TEST_BIN)
	@sh tests/run_tests.sh $(BUILD)/tests $(BIN)/timirec

# Same suite, instrumented; CPU only (the CUDA runtime and ASan do not mix).
asan:
	$(MAKE) --no-print-directory BUILD=build-asan BIN=build-asan/bin OPT=-O1 \
	    SANITIZE="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test

bench: all $(BENCH_BIN)
	@sh bench/run_bench.sh $(BUILD)/bench $(BIN)/timirec

# The README's main job. Training lands with the model issues; today: a synthetic dataset,
# its statistics and the popularity baseline.
run: all
	$(BIN)/timirec synth --out data --dataset synth
	$(BIN)/timirec data --path data --dataset synth

gpu-check:
	@echo "gpu-check: no GPU checks yet (the CUDA backend is a later issue)"; $(MAKE) --no-print-directory all CUDA_ARCH=sm_90

clean:
	rm -rf build build-asan bin

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
