# The cost-growth figure of bench/scale_study.sh: gnuplot -e "study='FILE'; title_note='...'"
# bench/scale_plot.gp, FILE = bench_scale rows (header first): the MovieLens-1M multiples as
# lines, the Taobao-sized row (more items than 100x: 1.7M) as a separate point.
# Columns: 4 scale, 6 items, 12 load_s, 13 load_peak_rss_mb, 14 cache_load_s,
# 15/16 samples/s, 19 peak_rss_mb, 21/22 eval_s.
set datafile separator ","
set terminal pngcairo size 1200,820 font ",10"
set output "bench/results/scale.png"
set multiplot layout 2,2 title "timirec cost against dataset size on 2 CPU cores (".title_note.")"
is_ml(items) = (items < 1000000)
ml(items, v) = is_ml(items) ? v : 1/0
tb(items, v) = is_ml(items) ? 1/0 : v
set logscale x
set xlabel "interactions / 1,000,209 (MovieLens-1M)"
set grid
set key top left
set logscale y
set ylabel "seconds"
plot study using 4:(ml($6,$12)) skip 1 with linespoints lc 1 title "first load (CSV parse + index + cache write)", \
     study using 4:(tb($6,$12)) skip 1 with points pt 7 ps 1.5 lc 1 title "  Taobao size", \
     study using 4:(ml($6,$14)) skip 1 with linespoints lc 2 title "cached load", \
     study using 4:(tb($6,$14)) skip 1 with points pt 7 ps 1.5 lc 2 title "  Taobao size", \
     [1:100] 0.32*x with lines dashtype 2 lc 0 title "linear from 1x"
set ylabel "peak RSS, MB"
plot study using 4:(ml($6,$19)) skip 1 with linespoints lc 1 title "training + evaluation (cached corpus)", \
     study using 4:(tb($6,$19)) skip 1 with points pt 7 ps 1.5 lc 1 title "  Taobao size", \
     study using 4:(ml($6,$13)) skip 1 with linespoints lc 2 title "first load", \
     study using 4:(tb($6,$13)) skip 1 with points pt 7 ps 1.5 lc 2 title "  Taobao size"
unset logscale y
set ylabel "samples/s (2 threads, LazyAdam, batch 256)"
set yrange [0:*]
set key top right
plot study using 4:(ml($6,$15)) skip 1 with linespoints lc 1 title "pretrain", \
     study using 4:(tb($6,$15)) skip 1 with points pt 7 ps 1.5 lc 1 title "  Taobao size", \
     study using 4:(ml($6,$16)) skip 1 with linespoints lc 2 title "finetune", \
     study using 4:(tb($6,$16)) skip 1 with points pt 7 ps 1.5 lc 2 title "  Taobao size"
set logscale y
set autoscale y
set key top left
set ylabel "seconds: 1,000 users' top-50 over every item"
plot study using 4:(ml($6,$21)) skip 1 with linespoints lc 1 title "pretrain (K = 2 vectors a user)", \
     study using 4:(tb($6,$21)) skip 1 with points pt 7 ps 1.5 lc 1 title "  Taobao size (1.7M items)", \
     study using 4:(ml($6,$22)) skip 1 with linespoints lc 2 title "finetune (1 vector)", \
     study using 4:(tb($6,$22)) skip 1 with points pt 7 ps 1.5 lc 2 title "  Taobao size"
unset multiplot
