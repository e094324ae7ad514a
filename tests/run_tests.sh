#!/bin/sh
# Runs every test program in $1 (and the shell tests, which get the binary $2), prints
# PASS/FAIL/SKIP per test and ends with "N passed, N failed, N skipped".
# Exit code 77 from a test means SKIP. Non-zero exit if anything failed.
dir=$1
bin=$2
passed=0 failed=0 skipped=0
failed_names=""
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
        failed=$((failed + 1)); failed_names="$failed_names $name"
        echo "FAIL  $name (exit $rc)"; sed 's/^/    | /' "$log" | tail -n 40
    fi
    rm -f "$log"
}
for t in "$dir"/test_*; do
    case "$t" in *.d|*.o) continue ;; esac
    [ -x "$t" ] || continue
    run_one "$(basename "$t")" "$t"
done
for t in tests/cli_*.sh; do
    [ -f "$t" ] || continue
    run_one "$(basename "$t")" sh "$t" "$bin"
done
[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
