#!/bin/sh
# Cost growth with the dataset (issue "industrial scale"): bench_scale at 1x, 10x and 100x
# MovieLens-1M interactions and at Taobao size (ComiRec's 976,779 users, 1,708,530 items,
# 85,384,110 interactions), one process each, rows appended to bench/results/scale.csv, then
# bench/results/scale_study.csv (this study's CPU rows) and bench/results/scale.png (gnuplot,
# when installed: bench/scale_plot.gp). Each size also gets a GPU row in scale.csv ("not run"
# without a GPU).
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
# One size: the CPU row (into the study too), then the same dataset on the GPU (--gpu 1: a row
# of numbers when a GPU is usable, else a "not run" row at once), then the dataset is deleted.
one_size() {
    "$build/bench/bench_scale" "$@" --keep 1 --csv "$csv" || status=1
    [ -s "$study" ] || head -n 1 "$csv" > "$study"
    tail -n 1 "$csv" >> "$study"
    "$build/bench/bench_scale" "$@" --gpu 1 --reuse 1 --keep 0 --csv "$csv" || status=1
    rm -rf /tmp/timirec_scale/scale
}
for s in ${SCALES:-1 10 100}; do
    one_size --scale "$s"
done
if [ "${TAOBAO:-1}" != 0 ]; then
    one_size --users 976779 --items 1708530 --interactions 85384110
fi
if command -v gnuplot >/dev/null 2>&1 && [ -s "$study" ]; then
    gnuplot -e "study='$study'; title_note='$TIMIREC_COMMIT, $TIMIREC_DATE'" bench/scale_plot.gp &&
        echo "plot: bench/results/scale.png"
else
    echo "SKIP plot: gnuplot not installed (apt-get install -y gnuplot-nox)"
fi
exit $status
