#!/bin/sh
# Runs every benchmark in $1 with the commit and date recorded in the result rows.
dir=$1
TIMIREC_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && TIMIREC_COMMIT="$TIMIREC_COMMIT+dirty"
TIMIREC_DATE=$(date -u +%Y-%m-%d)
export TIMIREC_COMMIT TIMIREC_DATE
status=0
for b in "$dir"/bench_*; do
    case "$b" in *.d|*.o) continue ;; esac
    [ -x "$b" ] || continue
    echo "== $(basename "$b")"
    "$b" || status=1
done
exit $status
