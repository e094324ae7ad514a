#!/bin/sh
# Usage: sh tests/run_tests.sh DIR BIN NAME...
# Runs the named tests: a test program NAME is DIR/NAME, a shell test NAME (cli_*.sh) is
# `sh tests/NAME BIN`. `make test` passes the list the Makefile builds (TEST_BIN, EMU_TEST_BIN
# and tests/cli_*.sh): nothing is globbed from DIR, so a stale binary of a deleted test never
# runs. One test: `make test ONLY=test_golden` (or ONLY="test_golden cli_train.sh"), or call
# this script with those names. A named test that is missing FAILs.
# Prints PASS/FAIL/SKIP per test and ends with "N passed, N failed, N skipped".
# Exit code 77 from a test means SKIP. Non-zero exit if anything failed.
if [ $# -lt 3 ]; then
    echo "usage: sh tests/run_tests.sh DIR BIN NAME... (make test passes the names)" >&2
    echo "0 passed, 1 failed, 0 skipped"
    exit 2
fi
dir=$1
bin=$2
# Shell tests that launch a test program (cli_comm.sh: test_comm under mpirun) find it here.
export TIMIREC_TEST_DIR="$dir"
shift 2
passed=0 failed=0 skipped=0
failed_names=""
fail() {
    failed=$((failed + 1)); failed_names="$failed_names $1"
    echo "FAIL  $1 ($2)"
}
run_one() {
    name=$1; shift
    log=$(mktemp)
    start=$(date +%s)
    timeout 600 "$@" >"$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1)); echo "PASS  $name (${secs}s)"
    elif [ $rc -eq 77 ]; then
        skipped=$((skipped + 1)); echo "SKIP  $name: $(grep -m1 SKIP "$log" || tail -n1 "$log")"
    else
        fail "$name" "exit $rc"; sed 's/^/    | /' "$log" | tail -n 40
    fi
    rm -f "$log"
}
for name in "$@"; do
    case "$name" in
    */*) fail "$name" "a test name, not a path" ;;
    *.sh)
        if [ -f "tests/$name" ]; then run_one "$name" sh "tests/$name" "$bin"
        else fail "$name" "tests/$name missing"; fi ;;
    *)
        if [ -f "$dir/$name" ] && [ -x "$dir/$name" ]; then run_one "$name" "$dir/$name"
        else fail "$name" "$dir/$name missing: not built"; fi ;;
    esac
done
[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
