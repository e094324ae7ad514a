#!/bin/sh
# Cost growth with the dataset (issue "industrial scale"): bench_scale at 1x, 10x and 100x
# MovieLens-1M interactions and at Taobao size (ComiRec's 976,779 users, 1,708,530 items,
# 85,384,110 interactions), one process each, rows appended to bench/results/scale.csv, then
# bench/results/scale_study.csv (this study's rows) and bench/results/scale.png (gnuplot, when
# installed: bench/scale_plot.gp).
# Usage: sh bench/scale_study.sh [BUILD_DIR]   (SCALES="1 10" to run fewer; TAOBAO=0 to skip it)
# Needs about 5 GB of disk under /tmp per dataset (deleted after each) and 10 minutes on 2 cores.
build=${1:-build}
csv=bench/results/scale.csv
TIMIREC_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && TIMIREC_COMMIT="$TIMIREC_COMMIT+dirty"
TIMIREC_DATE=$(date -u +%Y-%m-%d)
export TIMIREC_COMMIT TIMIREC_DATE
study=bench/results/scale_study.csv  # this study's rows alone (the figure's data)
status=0
: > "$study"
for s in ${SCALES:-1 10 100}; do
    "$build/bench/bench_scale" --scale "$s" --csv "$csv" || status=1
    [ -s "$study" ] || head -n 1 "$csv" > "$study"
    tail -n 1 "$csv" >> "$study"
done
if [ "${TAOBAO:-1}" != 0 ]; then
    "$build/bench/bench_scale" --users 976779 --items 1708530 --interactions 85384110 --csv "$csv" || status=1
    tail -n 1 "$csv" >> "$study"
fi
if command -v gnuplot >/dev/null 2>&1 && [ -s "$study" ]; then
    gnuplot -e "study='$study'; title_note='$TIMIREC_COMMIT, $TIMIREC_DATE'" bench/scale_plot.gp &&
        echo "plot: bench/results/scale.png"
else
    echo "SKIP plot: gnuplot not installed (apt-get install -y gnuplot-nox)"
fi
exit $status
