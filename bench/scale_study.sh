#!/bin/sh
# Cost growth with the dataset (issue "industrial scale"): bench_scale at 1x, 10x and 100x
# MovieLens-1M interactions and at Taobao size (ComiRec's 976,779 users, 1,708,530 items,
# 85,384,110 interactions), one process each, rows appended to bench/results/scale.csv, then
# bench/results/scale.png (gnuplot, when installed) from this study's rows.
# Usage: sh bench/scale_study.sh [BUILD_DIR]   (SCALES="1 10" to run fewer; TAOBAO=0 to skip it)
# Needs about 5 GB of disk under /tmp per dataset (deleted after each) and 10 minutes on 2 cores.
build=${1:-build}
csv=bench/results/scale.csv
TIMIREC_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && TIMIREC_COMMIT="$TIMIREC_COMMIT+dirty"
TIMIREC_DATE=$(date -u +%Y-%m-%d)
export TIMIREC_COMMIT TIMIREC_DATE
study=$(mktemp) || exit 1
trap 'rm -f "$study"' EXIT
status=0
for s in ${SCALES:-1 10 100}; do
    "$build/bench/bench_scale" --scale "$s" --csv "$csv" || status=1
    tail -n 1 "$csv" >> "$study"
done
if [ "${TAOBAO:-1}" != 0 ]; then
    "$build/bench/bench_scale" --users 976779 --items 1708530 --interactions 85384110 --csv "$csv" || status=1
    tail -n 1 "$csv" >> "$study"
fi
if command -v gnuplot >/dev/null 2>&1 && [ -s "$study" ]; then
    # Columns: 4 scale, 12 load_s, 14 cache_load_s, 15/16 samples/s, 19 peak_rss_mb, 21/22 eval_s.
    gnuplot <<GP
set datafile separator ","
set terminal pngcairo size 1200,800 font ",10"
set output "bench/results/scale.png"
set multiplot layout 2,2 title "timirec cost against dataset size (x MovieLens-1M interactions; last point: Taobao size), $TIMIREC_COMMIT, $TIMIREC_DATE"
set logscale x
set xlabel "interactions / 1,000,209"
set grid
set key top left
set logscale y
set ylabel "seconds"
plot "$study" using 4:12 with linespoints title "first load (CSV parse + index + cache write)", \
     "$study" using 4:14 with linespoints title "cached load", \
     "$study" using 4:(\$4) with lines dashtype 2 title "linear growth (slope 1)"
set ylabel "MB"
plot "$study" using 4:19 with linespoints title "peak RSS, training + evaluation", \
     "$study" using 4:13 with linespoints title "peak RSS, first load"
unset logscale y
set ylabel "samples/s (2 threads, LazyAdam)"
set yrange [0:*]
plot "$study" using 4:15 with linespoints title "pretrain", \
     "$study" using 4:16 with linespoints title "finetune"
set logscale y
set autoscale y
set ylabel "seconds, 1,000 users x every item"
plot "$study" using 4:21 with linespoints title "full-catalog top-50, pretrain (K = 2 vectors)", \
     "$study" using 4:22 with linespoints title "full-catalog top-50, finetune (1 vector)"
unset multiplot
GP
    echo "plot: bench/results/scale.png"
else
    echo "SKIP plot: gnuplot not installed (apt-get install -y gnuplot-nox)"
fi
exit $status
