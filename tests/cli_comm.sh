#!/bin/sh
# The MPI transport of comm.h under OpenMPI's mpirun (SKIP without an MPI build or mpirun):
#  * test_comm (every collective bit for bit against a rank-order reference) on 1, 2 and 3
#    ranks, and on 3 ranks with every MPI call cut to 4099 bytes (TIMIREC_TEST_COMM_CHUNK: the
#    rounds that carry transfers over INT_MAX bytes);
#  * a rank that skips a collective (TIMIREC_TEST_COMM_SKIP): the job ends non-zero once the
#    collective timeout (TIMIREC_COMM_TIMEOUT=3) passes, the message naming a rank and the
#    collective, never a hang;
#  * a rank that exits(1) mid-run: mpirun stops the others and returns non-zero promptly.
# Each launch: mpirun --oversubscribe -np N (as root with OMPI_ALLOW_RUN_AS_ROOT*), one OpenMP
# thread per rank, under `timeout 60` so that a hang fails the test.
tests=${TIMIREC_TEST_DIR:-build/tests}
prog="$tests/test_comm"
[ -x "$prog" ] || { echo "FAIL: $prog not built"; exit 1; }
"$prog" --mpi-built || { echo "SKIP: this build has no MPI (no mpicc at build time)"; exit 77; }
command -v mpirun >/dev/null 2>&1 || { echo "SKIP: mpirun not found"; exit 77; }

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
# Shared-memory transport only, no network probing: quick start-up on a single machine.
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
launch() { n=$1; shift; timeout 60 mpirun --oversubscribe -np "$n" "$@"; }

for n in 1 2 3; do
    launch $n "$prog" > "$tmp/out$n" 2>&1; rc=$?
    check "test_comm on $n ranks (exit $rc)" \
        "[ $rc -eq 0 ] && [ \$(grep -c ', 0 failed' $tmp/out$n) -eq $n ]"
    [ $rc -eq 0 ] || sed 's/^/    | /' "$tmp/out$n" | tail -n 20
done
check "the description names MPI and the ranks" "grep -q 'test_comm: MPI (Open MPI .*): 3 ranks on ' $tmp/out3"

TIMIREC_TEST_COMM_CHUNK=4099 launch 3 -x TIMIREC_TEST_COMM_CHUNK "$prog" > "$tmp/chunk" 2>&1; rc=$?
check "test_comm on 3 ranks in 4099-byte rounds (exit $rc)" \
    "[ $rc -eq 0 ] && [ \$(grep -c ', 0 failed' $tmp/chunk) -eq 3 ]"
[ $rc -eq 0 ] || sed 's/^/    | /' "$tmp/chunk" | tail -n 20

# Rank 1 skips its 3rd collective: the others wait in "step 3" or later until the timeout.
start=$(date +%s)
TIMIREC_COMM_TIMEOUT=3 TIMIREC_TEST_COMM_SKIP=1:step\ 3 \
    launch 2 -x TIMIREC_COMM_TIMEOUT -x TIMIREC_TEST_COMM_SKIP "$prog" --faults > "$tmp/skip" 2>&1
rc=$?; secs=$(( $(date +%s) - start ))
check "a skipped collective stops the job, exit $rc in ${secs}s (not 0, not a 124 hang)" \
    "[ $rc -ne 0 ] && [ $rc -ne 124 ]"
check "the message names a rank and the collective" \
    "grep -Eq 'timirec: rank [0-9] of 2: collective \"step [0-9]\" failed: .*no answer after 3 s' $tmp/skip"
check "the skipping rank said so" "grep -q 'rank 1 of 2: TIMIREC_TEST_COMM_SKIP: skipping collective 3 \"step 3\"' $tmp/skip"
grep -q 'no answer after' "$tmp/skip" || sed 's/^/    | /' "$tmp/skip" | tail -n 20

# Rank 2 of 3 exits(1) before step 3; the others are waiting in it (timeout 60 s: mpirun must
# stop them long before).
start=$(date +%s)
TIMIREC_COMM_TIMEOUT=60 launch 3 -x TIMIREC_COMM_TIMEOUT "$prog" --faults 2 > "$tmp/exit" 2>&1
rc=$?; secs=$(( $(date +%s) - start ))
check "a rank's exit(1) stops the job: exit $rc in ${secs}s (not 0, under 30 s)" \
    "[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $secs -lt 30 ]"
check "mpirun names the failed process" "grep -q 'exited on signal\|non-zero exit code\|returned a non-zero' $tmp/exit"
[ $fail -eq 0 ] || sed 's/^/    | /' "$tmp/exit" | tail -n 20
exit $fail
