#!/bin/sh
# timirec sweep on a tiny synthetic dataset: a 2x2 grid through both stages, stopped part-way
# (--max_runs) and resumed without redoing finished runs, interrupted by SIGTERM (the
# interrupted run is not recorded) and resumed, a failing grid value recorded as failed while
# the sweep goes on, the rows of sweep.csv, and the plots when gnuplot is installed.
bin=${1:-bin/timirec}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
rows() { tail -n +2 "$1" | grep -c .; }

"$bin" synth --out "$tmp/data" --dataset toy --users 120 --items 60 --n_clusters 6 --seq_len 12 --negatives 20 >/dev/null || { echo "FAIL: synth"; exit 1; }
# One thread: the runs are tiny, and OpenMP threads only wait for each other on a busy machine.
sweep="$bin sweep --model_name TiMiRec --path $tmp/data --dataset toy --epoch 2 --batch_size 64 --emb_size 16 --threads 1"

check "--help names the grid" "'$bin' sweep --help | grep -q -- '--grid'"
"$bin" sweep --grid "Kx=1,2" --out "$tmp/bad" --path "$tmp/data" --dataset toy > "$tmp/bad.out" 2>&1; rc=$?
check "a grid key that is no training flag is refused" "[ $rc -eq 2 ] && grep -q 'Kx is not a training flag' $tmp/bad.out"

# 1. Stop after 3 of the 8 runs, then resume: the other 5 run, the first 3 are kept as they were.
out=$tmp/s1
csv=$out/sweep.csv
$sweep --grid "K=1,2;history_max=5,10" --out "$out" --max_runs 3 > "$tmp/a.out" 2>&1; rc=$?
check "--max_runs 3 stops after 3 runs" "[ $rc -eq 0 ] && grep -q 'stopped after 3 runs' $tmp/a.out"
check "3 rows after the first part" "[ \$(rows $csv) -eq 3 ]"
cp "$csv" "$tmp/first.csv"
$sweep --grid "K=1,2;history_max=5,10" --out "$out" > "$tmp/b.out" 2>&1; rc=$?
check "resume: exit 0" "[ $rc -eq 0 ]"
check "resume runs the other 5 only" "grep -q '^sweep: 5 runs now, 3 already done, 0 failed' $tmp/b.out"
check "the first 3 rows are unchanged" "[ \"\$(head -n 4 $csv)\" = \"\$(cat $tmp/first.csv)\" ]"
check "header: settings, seed, stage, status, why, epochs, best epoch, dev and test metrics, times" \
    "head -n 1 $csv | grep -q '^K,history_max,seed,stage,status,why,epochs,best_epoch,dev_NDCG@5,dev_HR@5,test_NDCG@5,test_NDCG@10,.*,test_HR@50,train_s,eval_s,samples_per_s,wall_s,run_dir\$'"
check "8 rows, one per (K, history_max, stage)" "[ \$(rows $csv) -eq 8 ] && [ \$(tail -n +2 $csv | cut -d, -f1-4 | sort -u | wc -l) -eq 8 ]"
bad=$(awk -F, 'NR > 1 && !($5 == "ok" && $7 == 2 && $8 >= 1 && $8 <= 2 && $11 > 0 && $11 <= 1 && $19 > 0 && $21 > 0) {print}' "$csv")
check "every row ok with 2 epochs, a best epoch, a test metric in (0,1] and samples/s" "[ -z \"$bad\" ]"
[ -n "$bad" ] && echo "$bad"
check "finetune loads the pretrain checkpoint of its own point" \
    "grep -q 'Load model from $out/runs/K=2__history_max=10__seed=0/model/TiMiRec/Extractor__toy__0__emb_size=16__K=2' $out/runs/K=2__history_max=10__seed=0/finetune.log"
cp "$csv" "$tmp/full.csv"
$sweep --grid "K=1,2;history_max=5,10" --out "$out" > "$tmp/c.out" 2>&1; rc=$?
check "a finished sweep run again redoes nothing" "[ $rc -eq 0 ] && grep -q '^sweep: 0 runs now, 8 already done' $tmp/c.out && cmp -s $csv $tmp/full.csv"
$sweep --grid "K=1,2;history_max=5,10" --out "$out" --lr 0.01 > "$tmp/d.out" 2>&1; rc=$?
check "other shared settings in the same folder are refused" "[ $rc -eq 2 ] && grep -q 'other shared settings' $tmp/d.out && cmp -s $csv $tmp/full.csv"

if command -v gnuplot >/dev/null 2>&1; then
    for key in K history_max; do
        check "plot_$key.png is a PNG" "[ \"\$(head -c 4 $out/plot_$key.png | tail -c 3)\" = PNG ]"
        check "plot_$key.svg is an SVG" "grep -q '<svg' $out/plot_$key.svg"
    done
    check "plot data: 2 stages x 2 lines, 2 points each" "[ \$(grep -c '^[01] ' $out/plot_K.dat) -eq 8 ]"
else
    echo "SKIP: plots (gnuplot is not installed: apt-get install -y gnuplot-nox)"
    check "without gnuplot the sweep says the plots were skipped" "grep -q 'plots skipped' $tmp/b.out"
fi

# 2. A failing point: K=0 is out of range. Its pretrain fails (with the reason), its finetune is
# skipped, and the next point still runs.
$sweep --grid "K=0,2;history_max=5" --out "$tmp/s2" > "$tmp/e.out" 2>&1; rc=$?
csv2=$tmp/s2/sweep.csv
check "a failed run makes the exit code 1" "[ $rc -eq 1 ]"
check "K=0 pretrain recorded as failed, with why" "grep -q '^0,5,0,pretrain,failed,\"exit 2: timirec: error: --K: 0 is outside the accepted range' $csv2"
check "K=0 finetune recorded as skipped" "grep -q '^0,5,0,finetune,skipped,pretrain did not succeed' $csv2"
check "the sweep went on: K=2 both stages ok" "grep -q '^2,5,0,pretrain,ok,' $csv2 && grep -q '^2,5,0,finetune,ok,' $csv2"
$sweep --grid "K=0,2;history_max=5" --out "$tmp/s2" > "$tmp/f.out" 2>&1; rc=$?
check "a failed point is not retried by default" "[ $rc -eq 1 ] && grep -q '^sweep: 0 runs now, 4 already done, 2 failed' $tmp/f.out"

# 3. SIGTERM while a run is going: the sweep stops (128 + 15), records nothing for that run,
# and the same command finishes the job.
long="$sweep --grid K=1 --stages pretrain --epoch 60 --early_stop 0 --out $tmp/s3"
$long > "$tmp/g.out" 2>&1 &
pid=$!
json=$tmp/s3/runs/K=1__seed=0/pretrain.jsonl
i=0
while [ $i -lt 200 ] && ! grep -q '"event": "epoch"' "$json" 2>/dev/null; do sleep 0.05; i=$((i + 1)); done
kill -TERM "$pid"
wait "$pid"; rc=$?
check "SIGTERM stops the sweep with 143" "[ $rc -eq 143 ] && grep -q 'interrupted (not recorded)' $tmp/g.out"
check "the interrupted run is not in sweep.csv" "! grep -q ',pretrain,' $tmp/s3/sweep.csv 2>/dev/null"
$long > "$tmp/h.out" 2>&1; rc=$?
check "the same command runs it to the end" "[ $rc -eq 0 ] && grep -q '^1,0,pretrain,ok,,60,' $tmp/s3/sweep.csv"
check "its log holds only the finished try" "[ \$(grep -c '\"event\": \"epoch\"' $json) -eq 60 ]"

exit $fail
