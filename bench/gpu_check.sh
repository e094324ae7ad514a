#!/bin/sh
# `make gpu-check` after the build: GPU parity tests, device ceilings, GPU benchmarks, and (when
# a copy of the reference framework sits in local/rechorus) the reference's own epoch time on
# the same card. Everything is logged to $OUT/ when set (the device machine), and a short table
# is printed last. Without a GPU every GPU step says SKIP.
# GPU_CHECK_PARTS (default "tests bench reference") picks the parts, so a session whose device
# calls are limited to 10 minutes can run them as separate calls; each step's seconds are
# printed so the next session can size its calls. "scale" (bench_scale --gpu 1 at growing
# dataset sizes) runs only when named. The compute-sanitizer parts (memcheck,
# racecheck, synccheck, initcheck; "sanitize" for all four) run only when named.
build=${1:-build}
out=${OUT:-build/gpu-check}
mkdir -p "$out"
TIMIREC_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && TIMIREC_COMMIT="$TIMIREC_COMMIT+dirty"
TIMIREC_DATE=$(date -u +%Y-%m-%d)
export TIMIREC_COMMIT TIMIREC_DATE
summary="$out/summary.txt"
: > "$summary"
note() { echo "$*" | tee -a "$summary"; }
parts=${GPU_CHECK_PARTS:-tests bench reference}
want() { case " $parts " in *" $1 "*) return 0 ;; esac; return 1; }
elapsed() { echo "($(( $(date +%s) - $1 )) s)"; }

command -v nvidia-smi >/dev/null 2>&1 &&
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem \
        --format=csv | tee "$out/nvidia-smi.txt"

# 1. GPU-vs-CPU parity tests (each prints SKIP without a GPU).
pass=0; fail=0; skip=0
# the Makefile's list (a stale binary of a removed test never runs; a listed one missing fails)
gpu_tests=$(make -s --no-print-directory test-names 2>/dev/null | tr ' ' '\n' | grep '^test_gpu_')
want tests && for name in $gpu_tests; do
    t="$build/tests/$name"
    if [ ! -x "$t" ]; then fail=$((fail + 1)); note "FAIL $name (not built)"; continue; fi
    t0=$(date +%s)
    timeout 300 "$t" > "$out/$name.log" 2>&1
    rc=$?
    tail -3 "$out/$name.log"
    if [ $rc -eq 0 ]; then pass=$((pass + 1)); note "PASS $name $(elapsed $t0)"
    elif [ $rc -eq 77 ]; then skip=$((skip + 1)); note "SKIP $name: $(tail -1 "$out/$name.log")"
    else fail=$((fail + 1)); note "FAIL $name (exit $rc) $(elapsed $t0)"; fi
done

# The --gpu switch end to end through the command line (trains on the GPU when one is usable).
if want tests && [ -x "${BIN:-bin}/timirec" ]; then
    sh tests/cli_gpu.sh "${BIN:-bin}/timirec" > "$out/cli_gpu.log" 2>&1
    rc=$?
    tail -3 "$out/cli_gpu.log"
    if [ $rc -eq 0 ]; then pass=$((pass + 1)); note "PASS cli_gpu.sh"
    else fail=$((fail + 1)); note "FAIL cli_gpu.sh (exit $rc)"; fi
fi

# compute-sanitizer, each tool its own part (GPU_CHECK_PARTS="memcheck racecheck synccheck
# initcheck", or "sanitize" for all four; GPU_CHECK_MEMCHECK=1 adds memcheck to the default
# parts): the backend's tests at small shapes (TMR_SMALL_SHAPES=1), one step per (tool, test)
# with its seconds. memcheck: out-of-bounds and misaligned accesses (the device twin of the
# ASan run of the emulated backend); racecheck: shared-memory hazards between threads of a
# block, which the emulation's serial threads cannot show; synccheck: barriers and warp
# primitives used illegally (divergent __syncthreads, bad shuffle masks); initcheck: device
# memory read before anything wrote it.
[ "${GPU_CHECK_MEMCHECK:-0}" = 1 ] && parts="$parts memcheck"
want sanitize && parts="$parts memcheck racecheck synccheck initcheck"
sanitizer_tests="test_gpu_ops test_gpu_heads test_gpu_epoch"
# on the PATH, beside nvcc, or in the toolkit's own folder
sanitizer=$(command -v compute-sanitizer 2>/dev/null)
nvcc_dir=$(dirname "$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)")
for c in "$nvcc_dir/compute-sanitizer" "$nvcc_dir/../compute-sanitizer/compute-sanitizer"; do
    [ -z "$sanitizer" ] && [ -x "$c" ] && sanitizer=$c
done
for tool in memcheck racecheck synccheck initcheck; do
    want $tool || continue
    if [ -z "$sanitizer" ]; then
        note "SKIP $tool: compute-sanitizer not found (PATH, $nvcc_dir)"
        continue
    fi
    names=$sanitizer_tests
    [ $tool = memcheck ] && names="$names test_gpu_model test_gpu_sampler test_gpu_scatter test_gpu_graphs"
    for name in $names; do
        [ -x "$build/tests/$name" ] || continue
        t0=$(date +%s)
        TMR_SMALL_SHAPES=1 timeout 600 "$sanitizer" --tool $tool --error-exitcode 99 \
            "$build/tests/$name" > "$out/${tool}_$name.log" 2>&1
        rc=$?
        if [ $rc -eq 0 ]; then note "PASS $tool $name $(elapsed $t0)"
        elif [ $rc -eq 77 ]; then note "SKIP $tool $name"
        else fail=$((fail + 1)); note "FAIL $tool $name (exit $rc) $(elapsed $t0)"; tail -20 "$out/${tool}_$name.log"; fi
    done
done

# 2. Ceilings and GPU benchmarks.
want bench && for b in "$build"/bench/bench_device "$build"/bench/bench_gpu_* "$build"/bench/bench_topk; do
    case "$b" in *.d|*.o) continue ;; esac
    [ -x "$b" ] || continue
    name=$(basename "$b")
    t0=$(date +%s)
    timeout 300 "$b" 2>&1 | tee "$out/$name.log"
    cat "$out/$name.log" >> "$summary"
    note "$name $(elapsed $t0)"
done
want bench && cp bench/results/device.csv bench/results/epoch.csv bench/results/kernels.csv \
    bench/results/topk.csv "$out/" 2>/dev/null

# 2b. "scale" (only when named: minutes and ~5 GB of disk): bench_scale --gpu 1 at 1x and 10x
# ML-1M and at Taobao size (issue "industrial scale"), rows into $out/scale_gpu.csv.
if want scale; then
    for size in "--scale 1" "--scale 10" "--users 976779 --items 1708530 --interactions 85384110"; do
        t0=$(date +%s)
        # shellcheck disable=SC2086
        timeout 400 "$build/bench/bench_scale" $size --gpu 1 --dir "${TMPDIR:-/tmp}/timirec_scale_gpu" \
            --csv "$out/scale_gpu.csv" 2>&1 | tee -a "$out/bench_scale.log"
        note "bench_scale --gpu 1 $size $(elapsed $t0)"
    done
fi

# 3. The reference framework on the same card (epoch time as its users see it).
if ! want reference; then
    :
elif [ -d local/rechorus/src ] && command -v python3 >/dev/null 2>&1 &&
   python3 -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    for stage in pretrain finetune; do
        (cd local/rechorus && timeout 200 python3 ../../bench/reference/run_rechorus.py src \
            --model_name TiMiRec --lr 1e-4 --l2 1e-6 --history_max 20 --K 2 --add_pos 1 \
            --add_trm 1 --stage $stage --temp 0.5 --n_layers 2 --dataset ml-100k --path ../data \
            --epoch 2 --gpu 0) > "$out/rechorus_$stage.log" 2>&1
        note "reference ml-100k $stage (torch $(python3 -c 'import torch;print(torch.__version__)')): $(grep -a '^Epoch ' "$out/rechorus_$stage.log" | tr '\n' ' ')"
    done
else
    note "SKIP reference timing: no local/rechorus/src or no CUDA PyTorch"
fi

echo "================ gpu-check summary ($TIMIREC_DATE, $TIMIREC_COMMIT)"
cat "$summary"
echo "gpu tests: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
