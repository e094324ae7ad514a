#!/bin/sh
# Runs every benchmark in $1 with the commit and date recorded in the result rows.
# TIMIREC_BENCH_QUICK=1 in the environment: the short version (default shapes, fewer repeats).
dir=$1
TIMIREC_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && TIMIREC_COMMIT="$TIMIREC_COMMIT+dirty"
TIMIREC_DATE=$(date -u +%Y-%m-%d)
export TIMIREC_COMMIT TIMIREC_DATE
status=0
start=$(date +%s)
for b in "$dir"/bench_*; do
    case "$b" in *.d|*.o) continue ;; esac
    [ -x "$b" ] || continue
    echo "== $(basename "$b")"
    "$b" || status=1
done
echo "== make bench: $(( $(date +%s) - start )) s${TIMIREC_BENCH_QUICK:+ (quick)}; rows appended to bench/results/*.csv"
exit $status
