#!/bin/sh
# Dry run of kernels/topk.cu without a GPU: compiled as host C++ against tests/emu/topk/topk_emu.h
# (one host thread per CUDA thread, real barriers, shared arrays, atomics; the product as the
# CPU's fused multiply-add chain), linked with the CPU library and tests/test_gpu_topk.c, run on
# a reduced set of shapes (TOPK_EMU_QUICK); then the benchmark's GPU checks on tiny shapes. Checks the kernel's logic, indexing and barriers
# before it meets a GPU; it says nothing about speed. Needs `make` to have built $BUILD/src.
# Usage (repository root): sh tests/emu/run_topk.sh [build dir]   (exit 0 when the test passes)
# EMU_SAN="-fsanitize=address,undefined" (or =thread) instruments the emulated kernel and test.
set -e
san=${EMU_SAN:-}
build=${1:-build}
out=$build/emu_topk
mkdir -p "$out"
python3 - kernels/topk.cu "$out/topk.cpp" <<'PY'
import re, sys
s = open(sys.argv[1]).read()
s = re.sub(r'(\w+)<<<(.*?)>>>\(', lambda m: 'emu_launch(%s, EMU_CFG(%s), ' % m.groups(), s, flags=re.S)
open(sys.argv[2], 'w').write('#define TOPK_EMU 1\n' + s)
PY
g++ $san -std=c++17 -O1 -g -pthread -Wall -Wno-unused-function -Itests/emu/topk -Iinclude \
    -c "$out/topk.cpp" -o "$out/topk.o"
cpu_objs=$(find "$build/src" -name '*.o' ! -name main.o)
blas=$(grep -q TIMIREC_OPENBLAS "$build/flags.stamp" && echo -lopenblas || true)
gcc $san -std=c11 -D_GNU_SOURCE -DTOPK_EMU=1 -O2 -g -fopenmp -Iinclude -Itests \
    -o "$out/test_gpu_topk" tests/test_gpu_topk.c "$out/topk.o" $cpu_objs -lm $blas -lstdc++ -pthread
if TOPK_EMU_QUICK=1 "$out/test_gpu_topk" > "$out/test_gpu_topk.log" 2>&1; then
    echo "PASS (emulated) test_gpu_topk: $(tail -1 "$out/test_gpu_topk.log")"
else
    echo "FAIL (emulated) test_gpu_topk: see $out/test_gpu_topk.log"; tail -5 "$out/test_gpu_topk.log"; exit 1
fi
# The benchmark's GPU variants and their checks against topk_cpu, on tiny shapes (no timing).
gcc $san -std=c11 -D_GNU_SOURCE -DTIMIREC_CUDA=1 -O2 -g -fopenmp -Iinclude \
    -o "$out/bench_topk" bench/bench_topk.c "$out/topk.o" $cpu_objs -lm $blas -lstdc++ -pthread
if TIMIREC_BENCH_CHECK_ONLY=1 "$out/bench_topk" > "$out/bench_topk.log" 2>&1; then
    echo "PASS (emulated) bench_topk: $(tail -1 "$out/bench_topk.log")"
else
    echo "FAIL (emulated) bench_topk: see $out/bench_topk.log"; tail -5 "$out/bench_topk.log"; exit 1
fi
