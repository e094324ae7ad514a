#!/bin/sh
# Data-parallel scaling on this machine (issue "data-parallel"): bench_dist as one process and
# under `mpirun -np 2`, pretrain and finetune at MovieLens-1M size (dense Adam: the whole
# gradient buffer summed) and the pretrain at 10x with LazyAdam (the touched item rows
# exchanged), plus the 8-GPU projections of the same exchanges; rows appended to
# bench/results/distributed.csv. One OpenMP thread a rank, so that 2 ranks use the 2 cores that
# one process with 2 threads would (that row is measured too).
# Usage: sh bench/dist_study.sh [BUILD_DIR]   (needs an MPI build and mpirun)
build=${1:-build}
b="$build/bench/bench_dist"
command -v mpirun >/dev/null 2>&1 || { echo "SKIP: mpirun not found"; exit 0; }
TIMIREC_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && TIMIREC_COMMIT="$TIMIREC_COMMIT+dirty"
TIMIREC_DATE=$(date -u +%Y-%m-%d)
export TIMIREC_COMMIT TIMIREC_DATE OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
status=0
for args in "--stage 1 --batches 300" "--stage 2 --batches 300" "--stage 1 --scale 10 --optimizer LazyAdam --batches 300"; do
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=2 "$b" $args || status=1
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 "$b" $args || status=1
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 mpirun --oversubscribe -np 2 "$b" $args --project 1 || status=1
done
rm -rf /tmp/timirec_dist
exit $status
