#!/bin/sh
# Dry run of the CUDA kernels without a GPU: compiles kernels/{gpu_util,adam,embedding,heads,
# interest}.cu as host C++ against the emulation headers in tests/emu/include (every launch runs
# its threads serially), links the GPU parity tests against them and the CPU library, and runs
# them. Checks indexing, arithmetic and the tests themselves before the kernels meet a GPU; it
# says nothing about races or performance. Needs `make` to have built $BUILD/src first.
# Usage (repository root): sh tests/emu/run.sh [build dir]   (exit 0 when every test passes)
# EMU_SAN="-fsanitize=address,undefined" instruments the emulated kernels and tests, so an
# out-of-bounds index inside a kernel is reported.
set -e
san=${EMU_SAN:-}
build=${1:-build}
out=$build/emu
mkdir -p "$out"
for k in gpu_util adam embedding heads interest; do
    # <<<grid, block, shared, stream>>> launches become emu_launch(kernel, EMU_CFG(...), args).
    python3 - kernels/$k.cu "$out/$k.cpp" <<'PY'
import re, sys
s = open(sys.argv[1]).read()
s = re.sub(r'#include <cub/[^>]*>\n', '', s)
s = re.sub(r'(\w+)<<<(.*?)>>>\(', lambda m: 'emu_launch(%s, EMU_CFG(%s), ' % m.groups(), s,
           flags=re.S)
s = s.replace('#include "common.cuh"', '#include "kernels/common.cuh"')
open(sys.argv[2], 'w').write(s)
PY
    g++ $san -std=c++17 -O1 -g -ffp-contract=off -Wall -Wno-unused-function -Wno-unused-variable \
        -Itests/emu/include -I. -Iinclude -c "$out/$k.cpp" -o "$out/$k.o"
done
cat > "$out/describe.c" <<'C'
#include <stdio.h>
int tmr_cuda_describe(char *out, size_t n) {
    snprintf(out, n, "CPU emulation of the kernels (tests/emu)");
    return 1;
}
C
gcc -c "$out/describe.c" -o "$out/describe.o"
cpu_objs=$(find "$build/src" -name '*.o' ! -name main.o)
blas=$(grep -q TIMIREC_OPENBLAS "$build/flags.stamp" && echo -lopenblas || true)
rc=0
for t in adam embedding heads interest; do
    gcc $san -std=c11 -D_GNU_SOURCE -O2 -g -fopenmp -DTIMIREC_CUDA=1 -Iinclude -Itests \
        -o "$out/test_gpu_$t" tests/test_gpu_$t.c "$out"/*.o $cpu_objs -lm $blas -lstdc++
    if "$out/test_gpu_$t" > "$out/test_gpu_$t.log" 2>&1; then
        echo "PASS (emulated) test_gpu_$t: $(tail -1 "$out/test_gpu_$t.log")"
    else
        echo "FAIL (emulated) test_gpu_$t: see $out/test_gpu_$t.log"; rc=1
    fi
done
# The GPU benchmark's own check against the CPU (no timing: emulated times mean nothing).
gcc $san -std=c11 -D_GNU_SOURCE -O2 -g -fopenmp -DTIMIREC_CUDA=1 -Iinclude \
    -o "$out/bench_gpu_ops" bench/bench_gpu_ops.c "$out"/*.o $cpu_objs -lm $blas -lstdc++
if TIMIREC_BENCH_CHECK_ONLY=1 "$out/bench_gpu_ops" > "$out/bench_gpu_ops.log" 2>&1; then
    echo "PASS (emulated) bench_gpu_ops: its check against the CPU reference"
else
    echo "FAIL (emulated) bench_gpu_ops: see $out/bench_gpu_ops.log"; rc=1
fi
exit $rc
