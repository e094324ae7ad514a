# timirec build. `make` builds bin/timirec (CPU always; CUDA part when nvcc is on the PATH),
# `make test` runs every test (`make test ONLY=test_golden`: one), `make asan` runs the suite
# under ASan+UBSan, `make bench` runs the benchmarks, `make run` the README's main job,
# `make fuzz` the fuzzers (clang + libFuzzer, FUZZ_SECONDS each), `make valgrind` a tiny
# end-to-end run under memcheck.

ifeq ($(origin CC),default)
  CC := gcc
endif
BUILD   ?= build
BIN     ?= bin
OPT     ?= -O3
# Vector width of the CPU kernels: the machine that builds is the machine that trains. For a
# binary that must run on another x86-64 machine, build with ARCH= (baseline SSE2).
ARCH    ?= -march=native
CFLAGS  ?=
SANITIZE ?=
CUDA    ?= auto

BASE_CFLAGS := -std=c11 -D_GNU_SOURCE $(OPT) $(ARCH) -g -Wall -Wextra -Werror -fopenmp -Iinclude $(SANITIZE)
LDLIBS  := -lm
LDFLAGS := -fopenmp $(SANITIZE)

LIB_SRC  := $(filter-out src/main.c,$(wildcard src/*.c src/cpu/*.c))

# ---- MPI detection: the MPI transport of comm.h (src/mpi/) when mpicc exists (and MPI != 0);
# else src/nompi/, whose stubs make every run one process. Sanitizer builds are without MPI
# (like CUDA); the GPU machine has no MPI.
MPI ?= auto
MPICC := $(shell command -v mpicc 2>/dev/null)
MPI_OFF_WHY := mpicc not found or MPI=0
ifeq ($(MPI),0)
  MPICC :=
endif
ifneq ($(SANITIZE),)
  MPICC :=
  MPI_OFF_WHY := sanitizer build
endif
ifneq ($(MPICC),)
  MPI_SRC := $(wildcard src/mpi/*.c)
  BASE_CFLAGS += -DTIMIREC_MPI=1 $(shell $(MPICC) --showme:compile)
  LDLIBS += $(shell $(MPICC) --showme:link)
  MPI_NOTE := MPI: mpicc found at $(MPICC) ($(shell $(MPICC) --showme:version 2>&1 | sed -n 's/.*\(Open MPI [0-9.]*\).*/\1/p')); data-parallel runs under mpirun
else
  MPI_SRC := $(wildcard src/nompi/*.c)
  MPI_NOTE := MPI: skipped src/mpi/ ($(MPI_OFF_WHY)); every run is one process
endif
LIB_SRC  += $(MPI_SRC)
LIB_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC))
MAIN_OBJ := $(BUILD)/src/main.o
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
BENCH_SRC := $(wildcard bench/bench_*.c)
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

# ---- OpenBLAS detection: the CPU matrix product uses it when present (OPENBLAS=0 to skip);
# without it the built-in OpenMP loop does the work (the GPU machine has no OpenBLAS).
OPENBLAS ?= auto
ifneq ($(OPENBLAS),0)
  HAVE_OPENBLAS := $(shell printf '\043include <cblas.h>\nint main(void){float a=1,b=1,c=0;cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,1,1,1,1.0f,&a,1,&b,1,0.0f,&c,1);return c!=1.0f;}\n' | $(CC) -x c - -o /dev/null -lopenblas >/dev/null 2>&1 && echo yes)
endif
ifeq ($(HAVE_OPENBLAS),yes)
  BASE_CFLAGS += -DTIMIREC_OPENBLAS=1
  LDLIBS += -lopenblas
  BLAS_NOTE := BLAS: OpenBLAS found and linked; the built-in product is the default (TIMIREC_GEMM=openblas selects OpenBLAS)
else
  BLAS_NOTE := BLAS: OpenBLAS not found (or OPENBLAS=0); CPU matrix products use the built-in loop
endif

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
  # cuBLAS/cuRAND as shared libraries from the toolkit (rpath: no LD_LIBRARY_PATH needed).
  CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart_static -lstdc++ -ldl -lrt -lpthread
  BASE_CFLAGS += -DTIMIREC_CUDA=1
  CUDA_NOTE := CUDA: nvcc found at $(NVCC) ($(shell $(NVCC) --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')); building kernels/ for $(CUDA_ARCH) and linking the CUDA backend
else
  # No CUDA backend: src/nocuda/ says so where the CUDA one would answer (backend.h).
  CU_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard src/nocuda/*.c))
  CUDA_LIBS :=
  CUDA_NOTE := CUDA: skipped kernels/ ($(CUDA_OFF_WHY)); building the CPU backend only
endif

# ---- NCCL detection: the GPU transport (include/timirec/comm_nccl.h, kernels/comm_nccl.cu),
# only with nvcc: NCCL_HOME (include/nccl.h, lib/ or lib64/libnccl.so.2), else the toolkit's
# own NCCL when it has one, else the NCCL of the nvidia-nccl wheel (pip install
# nvidia-nccl-cu13; PyTorch ships it); NCCL=0 skips it. Its library goes first on the link line
# and in the rpath, so the header and the library are the same NCCL. Without it src/nonccl/
# says "built without NCCL".
NCCL ?= auto
NCCL_STUB_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard src/nonccl/*.c))
ifneq ($(NVCC),)
  ifneq ($(NCCL),0)
    ifeq ($(NCCL_HOME),)
      ifneq ($(wildcard $(CUDA_HOME)/include/nccl.h),)
        NCCL_HOME := $(CUDA_HOME)
      else
        NCCL_HOME := $(shell python3 -c "import nvidia.nccl as m; print(list(m.__path__)[0])" 2>/dev/null)
      endif
    endif
    NCCL_LIB := $(firstword $(wildcard $(NCCL_HOME)/lib/libnccl.so.2 $(NCCL_HOME)/lib64/libnccl.so.2))
    HAVE_NCCL := $(if $(and $(NCCL_HOME),$(NCCL_LIB),$(wildcard $(NCCL_HOME)/include/nccl.h)),yes)
  endif
endif
ifeq ($(HAVE_NCCL),yes)
  CUDA_LIBS := -L$(dir $(NCCL_LIB)) -Wl,-rpath,$(dir $(NCCL_LIB)) -l:libnccl.so.2 $(CUDA_LIBS)
  NCCL_NOTE := NCCL: $(shell sed -n 's/^\#define NCCL_\(MAJOR\|MINOR\|PATCH\) *\([0-9]*\).*/\2/p' $(NCCL_HOME)/include/nccl.h | paste -sd.) at $(NCCL_HOME); building the GPU transport (kernels/comm_nccl.cu)
else
  CU_OBJ := $(filter-out $(BUILD)/kernels/comm_nccl.o,$(CU_OBJ)) $(NCCL_STUB_OBJ)
  NCCL_NOTE := NCCL: not built (no nvcc, NCCL=0, or no NCCL_HOME / toolkit NCCL / python3 nvidia.nccl); the GPU transport says so
endif
$(BUILD)/kernels/comm_nccl.o: NVCCFLAGS += -I$(NCCL_HOME)/include

# ---- The CUDA backend emulated on the host (emu/README.md): the backend's sources built with
# g++ -DTMR_EMULATE against emu/emulate.h, so its index arithmetic, buffer sizes, cuBLAS
# argument mapping and orchestration run in `make test` (and under ASan in `make asan`) without
# a GPU or nvcc.
# tests/test_gpu_X.c is built a second time as $(BUILD)/tests/test_emu_X against it.
EMU_CU   := $(filter-out kernels/device.cu kernels/ceilings.cu kernels/comm_nccl.cu,$(wildcard kernels/*.cu))
EMU_OBJ  := $(patsubst kernels/%.cu,$(BUILD)/emu/kernels/%.o,$(EMU_CU)) $(BUILD)/emu/emu/emulate.o
# Not emulated: test_gpu_rng (device Philox against the CPU's), test_gpu_nccl (NCCL has no host twin).
EMU_TEST_BIN := $(patsubst tests/test_gpu_%.c,$(BUILD)/tests/test_emu_%,$(filter-out tests/test_gpu_rng.c tests/test_gpu_nccl.c,$(wildcard tests/test_gpu_*.c)))
EMU_CXXFLAGS := -x c++ -std=c++17 -DTMR_EMULATE $(OPT) -g -Wall -Wextra -Werror -Iinclude $(SANITIZE)
# The host library: src/ has no #ifdef TIMIREC_CUDA (the backends are chosen at link time),
# so the emulated library is its objects with the emulated kernels in place of src/nocuda/.
EMU_LIB_OBJ := $(LIB_OBJ) $(NCCL_STUB_OBJ)

# The command line over the emulated backend (--gpu trains on the emulated device): the GPU
# data-parallel path under mpirun without a GPU (tests/cli_emu_dist.sh).
EMU_CLI := $(BUILD)/emu/timirec

.PHONY: all test test-names asan bench run clean cuda-note gpu-check fuzz fuzz-build FORCE
all: cuda-note $(BIN)/timirec

cuda-note:
	@echo "$(CUDA_NOTE)"
	@echo "$(BLAS_NOTE)"
	@echo "$(MPI_NOTE)"
	@echo "$(NCCL_NOTE)"

$(BIN)/timirec: $(MAIN_OBJ) $(BUILD)/libtimirec.a
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CUDA_LIBS)

$(BUILD)/libtimirec.a: $(LIB_OBJ) $(CU_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

# Objects depend on the flags they were built with: changing CUDA=, OPENBLAS= or the sanitizer
# rebuilds instead of linking stale objects.
FLAGS_STAMP := $(BUILD)/flags.stamp
FLAGS_NOW := $(CC) $(BASE_CFLAGS) $(CFLAGS) $(NVCC) $(CUDA_ARCH) $(HAVE_NCCL) $(NCCL_HOME)
$(shell mkdir -p $(BUILD); [ "$$(cat $(FLAGS_STAMP) 2>/dev/null)" = "$(FLAGS_NOW)" ] || echo "$(FLAGS_NOW)" > $(FLAGS_STAMP))

# Quiet by default (one line per file); `make V=1` prints the commands.
Q := $(if $(V),,@)

$(BUILD)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/kernels/%.o: kernels/%.cu $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  NVCC    $<")
	$(Q)$(NVCC) $(NVCCFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/%.c $(BUILD)/libtimirec.a
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -Itests -MMD -MP -o $@ $< $(BUILD)/libtimirec.a $(LDFLAGS) $(LDLIBS) $(CUDA_LIBS)

$(BUILD)/emu/kernels/%.o: kernels/%.cu $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  CXX-EMU $<")
	$(Q)$(CXX) $(EMU_CXXFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/emu/emu/%.o: emu/%.cpp $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  CXX-EMU $<")
	$(Q)$(CXX) $(EMU_CXXFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/emu/libtimirec_emu.a: $(EMU_LIB_OBJ) $(EMU_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(EMU_CLI): $(MAIN_OBJ) $(BUILD)/emu/libtimirec_emu.a
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  LINK    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lstdc++

$(BUILD)/tests/test_emu_%: tests/test_gpu_%.c $(BUILD)/emu/libtimirec_emu.a
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  CC-EMU  $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -DTIMIREC_CUDA=1 -Itests -MMD -MP -o $@ $< $(BUILD)/emu/libtimirec_emu.a $(LDFLAGS) $(LDLIBS) -lstdc++

# The fuzz regression test replays fuzz/corpus/ and fuzz/regress/ through fuzz/targets.c.
$(BUILD)/tests/test_fuzz_regress: tests/test_fuzz_regress.c fuzz/targets.c fuzz/targets.h $(BUILD)/libtimirec.a
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -Itests -Ifuzz -MMD -MP -o $@ $< fuzz/targets.c $(BUILD)/libtimirec.a $(LDFLAGS) $(LDLIBS) $(CUDA_LIBS)

# The op table and its harness (tests/op_table.h): test_gpu_ops / test_emu_ops run its grad and
# parity modes, bench_ops (CPU) and bench_gpu_ops (GPU) its perf mode.
OPS_SRC := tests/op_table.c tests/op_harness.c
$(BUILD)/tests/test_gpu_ops: tests/test_gpu_ops.c $(OPS_SRC) $(BUILD)/libtimirec.a
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -Itests -MMD -MP -o $@ $< $(OPS_SRC) $(BUILD)/libtimirec.a $(LDFLAGS) $(LDLIBS) $(CUDA_LIBS)

$(BUILD)/tests/test_emu_ops: tests/test_gpu_ops.c $(OPS_SRC) $(BUILD)/emu/libtimirec_emu.a
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  CC-EMU  $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -DTIMIREC_CUDA=1 -Itests -MMD -MP -o $@ $< $(OPS_SRC) $(BUILD)/emu/libtimirec_emu.a $(LDFLAGS) $(LDLIBS) -lstdc++

$(BUILD)/bench/bench_ops $(BUILD)/bench/bench_gpu_ops: $(BUILD)/bench/%: bench/%.c $(OPS_SRC) $(BUILD)/libtimirec.a
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -Itests -MMD -MP -o $@ $< $(OPS_SRC) $(BUILD)/libtimirec.a $(LDFLAGS) $(LDLIBS) $(CUDA_LIBS)

# test_gpu_coop / test_emu_coop: tests/test_gpu_coop.c with its own kernels (tests/coop_kernels.cu),
# built by nvcc for the GPU test (in a CUDA build; else the generic rule builds a SKIP) and by
# g++ -DTMR_EMULATE for the emulated one.
$(BUILD)/emu/tests/coop_kernels.o: tests/coop_kernels.cu $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  CXX-EMU $<")
	$(Q)$(CXX) $(EMU_CXXFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/test_emu_coop: tests/test_gpu_coop.c $(BUILD)/emu/tests/coop_kernels.o $(BUILD)/emu/libtimirec_emu.a
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  CC-EMU  $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -DTIMIREC_CUDA=1 -Itests -MMD -MP -o $@ $< $(BUILD)/emu/tests/coop_kernels.o $(BUILD)/emu/libtimirec_emu.a $(LDFLAGS) $(LDLIBS) -lstdc++

ifneq ($(NVCC),)
$(BUILD)/tests/coop_kernels.o: tests/coop_kernels.cu $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  NVCC    $<")
	$(Q)$(NVCC) $(NVCCFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/test_gpu_coop: tests/test_gpu_coop.c $(BUILD)/tests/coop_kernels.o $(BUILD)/libtimirec.a
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -Itests -MMD -MP -o $@ $< $(BUILD)/tests/coop_kernels.o $(BUILD)/libtimirec.a $(LDFLAGS) $(LDLIBS) $(CUDA_LIBS)
endif

$(BUILD)/bench/%: bench/%.c $(BUILD)/libtimirec.a
	@mkdir -p $(dir $@)
	@$(if $(V),:,echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -MMD -MP -o $@ $< $(BUILD)/libtimirec.a $(LDFLAGS) $(LDLIBS) $(CUDA_LIBS)

# The tests `make test` runs, by name: the programs it builds (test_fuzz_regress and
# test_gpu_coop/test_emu_coop by their own rules above) and the shell tests. tests/run_tests.sh
# runs exactly these (never a glob of $(BUILD)/tests, which may hold stale binaries);
# `make test ONLY="test_golden cli_train.sh"` builds and runs only the tests named.
CLI_TESTS := $(notdir $(wildcard tests/cli_*.sh))
TEST_NAMES := $(sort $(notdir $(TEST_BIN) $(EMU_TEST_BIN))) $(sort $(CLI_TESTS))
ONLY ?=
ifneq ($(strip $(ONLY)),)
  ifneq ($(filter-out $(TEST_NAMES),$(ONLY)),)
    $(error ONLY: no such test: $(filter-out $(TEST_NAMES),$(ONLY)) (make test-names lists them))
  endif
  RUN_NAMES := $(ONLY)
else
  RUN_NAMES := $(TEST_NAMES)
endif
RUN_BIN := $(addprefix $(BUILD)/tests/,$(filter-out $(CLI_TESTS),$(RUN_NAMES)))
# cli_comm.sh launches test_comm under mpirun; cli_emu_dist.sh the emulated command line.
RUN_BIN += $(if $(filter cli_comm.sh,$(RUN_NAMES)),$(BUILD)/tests/test_comm)
RUN_BIN += $(if $(filter cli_emu_dist.sh,$(RUN_NAMES)),$(EMU_CLI))

test: all $(RUN_BIN)
	@sh tests/run_tests.sh $(BUILD)/tests $(BIN)/timirec $(RUN_NAMES)

test-names:
	@echo $(TEST_NAMES)

# Same suite, instrumented; CPU only (the CUDA runtime and ASan do not mix).
# TIMIREC_SANITIZED=1 lets a test leave out what only times the same code again (see
# cli_sweep_gpus.sh), keeping the CI run well under 15 minutes on 2 cores.
asan:
	TIMIREC_SANITIZED=1 $(MAKE) --no-print-directory BUILD=build-asan BIN=build-asan/bin OPT=-O1 \
	    SANITIZE="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test

bench: all $(BENCH_BIN)
	@sh bench/run_bench.sh $(BUILD)/bench $(BIN)/timirec

# The README's main job: the built-in synthetic dataset, then both stages of TiMiRec with the
# reference's command line (configs/synth_*.ini), dev/test metrics printed.
run: all
	$(BIN)/timirec synth --out data --dataset synth
	$(BIN)/timirec --config configs/synth_pretrain.ini
	$(BIN)/timirec --config configs/synth_finetune.ini

# Build for Hopper, then GPU parity tests, ceilings, GPU benchmarks and a summary table
# (bench/gpu_check.sh). Without a GPU it still compiles everything, and every GPU step SKIPs.
gpu-check:
	$(MAKE) --no-print-directory CUDA_ARCH=sm_90 all $(TEST_BIN) $(BENCH_BIN)
	@sh bench/gpu_check.sh $(BUILD)

# libFuzzer harnesses (fuzz/): the library built by clang with ASan+UBSan into build-fuzz/,
# then each target run for FUZZ_SECONDS on a copy of its seed corpus (build-fuzz/corpus/);
# a crash is left in build-fuzz/ as crash-<sha1> (keep it under fuzz/regress/<target>/).
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := corpus corpus_cache config checkpoint
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
fuzz-build:
	$(MAKE) --no-print-directory BUILD=build-fuzz BIN=build-fuzz/bin CC=$(FUZZ_CC) OPT=-O1 CUDA=0 CFLAGS=-Wno-pass-failed \
	    SANITIZE="-fsanitize=fuzzer-no-link $(FUZZ_SAN)" build-fuzz/libtimirec.a
	@for t in $(FUZZ_TARGETS); do \
	    echo "  FUZZLD  build-fuzz/fuzz_$$t"; \
	    $(FUZZ_CC) -std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror -Iinclude -Ifuzz -fopenmp \
	        -fsanitize=fuzzer $(FUZZ_SAN) -o build-fuzz/fuzz_$$t fuzz/fuzz_$$t.c fuzz/targets.c \
	        build-fuzz/libtimirec.a $(LDLIBS) || exit 1; \
	done

fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p build-fuzz/corpus/$$t && cp fuzz/corpus/$$t/* build-fuzz/corpus/$$t/ && \
	    echo "== fuzz $$t for $(FUZZ_SECONDS) s" && \
	    (cd build-fuzz && ./fuzz_$$t -jobs=1 -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	        -rss_limit_mb=2048 -close_fd_mask=1 -print_final_stats=1 \
	        corpus/$$t ../fuzz/regress/$$t) || exit 1; \
	done

# ---- Valgrind (memcheck): a tiny end-to-end run, every command and both stages, tests/valgrind.sh.
# Its own build for the baseline CPU (ARCH=: valgrind does not decode every AVX-512
# instruction), without CUDA and OpenBLAS. Not part of `make test`.
valgrind:
	$(MAKE) --no-print-directory BUILD=build-valgrind BIN=build-valgrind/bin ARCH= CUDA=0 OPENBLAS=0 \
	    build-valgrind/bin/timirec
	@sh tests/valgrind.sh build-valgrind/bin/timirec

# compile_commands.json for editors and clangd (jump to definitions through the float/double
# macro names of src/cpu/*.inc): every C file with the flags `make` builds it with, and the
# CUDA sources as the emulation compiles them (g++ -x c++ -DTMR_EMULATE), so they resolve
# without a CUDA-aware language server (the #ifndef TMR_EMULATE parts show as inactive).
compile_commands.json: FORCE
	@{ echo '['; sep=' '; \
	  for f in $(LIB_SRC) src/main.c $(TEST_SRC) $(OPS_SRC) $(BENCH_SRC) $(wildcard fuzz/*.c); do \
	    printf '%s{"directory": "%s", "file": "%s", "command": "%s -Itests -Ifuzz -c %s"}\n' \
	      "$$sep" "$(CURDIR)" "$$f" "$(CC) $(BASE_CFLAGS) $(CFLAGS)" "$$f"; sep=','; \
	  done; \
	  for f in $(wildcard kernels/*.cu emu/*.cpp tests/*.cu); do \
	    printf '%s{"directory": "%s", "file": "%s", "command": "%s -c %s"}\n' \
	      "$$sep" "$(CURDIR)" "$$f" "$(CXX) $(EMU_CXXFLAGS)" "$$f"; \
	  done; echo ']'; } > $@
	@echo "  GEN     $@ ($$(grep -c '"file"' $@) files)"

FORCE:

clean:
	rm -rf build build-asan build-fuzz bin

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
