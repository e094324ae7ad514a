#!/bin/sh
# timirec sweep --gpus on a tiny synthetic dataset. This machine may have no GPU: a run given
# --gpu N then trains on the CPU and says so in its log ("Backend: CPU (CUDA asked for ...)"),
# which is all the sweep needs. Checked: two runs at once (the second starts before the first
# ends), each run got the --gpu of the GPU the sweep named for it, sweep.csv equals the one
# without --gpus (rows in grid order although runs end in another order), a sweep stopped by
# --max_runs resumes under --gpus to the same table, a failing run is recorded and the sweep
# goes on, SIGTERM stops every running child, and the refused forms of --gpus.
bin=${1:-bin/timirec}
# Under the sanitizers (make asan) every child run is several times slower and this test adds
# only scheduling to what cli_sweep.sh already runs there: sweep.c's memory is checked by it.
[ "${TIMIREC_SANITIZED:-0}" = 1 ] && { echo "SKIP: scheduling test, not under the sanitizers (cli_sweep.sh covers sweep.c there)"; exit 77; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
# sweep.csv without the timing columns (they differ from run to run).
untimed() {
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) skip[i] = $i ~ /^(train_s|eval_s|samples_per_s|wall_s)$/ }
             { s = ""; for (i = 1; i <= NF; i++) if (!skip[i]) s = s $i ","; print s }' "$1"
}

"$bin" synth --out "$tmp/data" --dataset toy --users 120 --items 60 --n_clusters 6 --seq_len 12 --negatives 20 >/dev/null || { echo "FAIL: synth"; exit 1; }
sweep="$bin sweep --model_name TiMiRec --path $tmp/data --dataset toy --batch_size 64 --emb_size 16 --threads 1 --early_stop 0"
# The first point trains 20 epochs, the second 1: the second point's runs end first.
grid="K=1,2;epoch=20,1"

check "--help names --gpus" "'$bin' sweep --help | grep -q -- '--gpus'"
$sweep --grid "$grid" --out "$tmp/seq" > "$tmp/seq.out" 2>&1; rc=$?
check "without --gpus: exit 0" "[ $rc -eq 0 ]"
$sweep --grid "$grid" --out "$tmp/par" --gpus 0,1 > "$tmp/par.out" 2>&1; rc=$?
check "--gpus 0,1: exit 0, 8 runs" "[ $rc -eq 0 ] && grep -q '^sweep: 8 runs now, 0 already done, 0 failed' $tmp/par.out"

# Two runs at once: the second run starts before any run has ended (the sweep prints a run's
# outcome line only once its child has exited).
first_end=$(grep -n ' on GPU [0-9]*: ' "$tmp/par.out" | head -n 1 | cut -d: -f1)
second_start=$(grep -n ': started on GPU ' "$tmp/par.out" | sed -n 2p | cut -d: -f1)
check "two runs overlap: the second starts before the first ends" \
    "[ -n '$first_end' ] && [ -n '$second_start' ] && [ $second_start -lt $first_end ]"
check "the first two runs go to GPU 0 and GPU 1" \
    "grep -q '^\[1/8\] K=1 epoch=20 seed=0 pretrain: started on GPU 0\$' $tmp/par.out && grep -q '^\[3/8\] K=1 epoch=1 seed=0 pretrain: started on GPU 1\$' $tmp/par.out"
check "runs end out of grid order (the 1-epoch point first)" \
    "grep ' on GPU [0-9]*: ok' $tmp/par.out | head -n 1 | grep -q '^\[3/8\]'"

# Each run was given the GPU the sweep named: its log's argument table and backend line.
n_checked=0
while read -r _ k e s stage _ _ _ gpu; do
    log="$tmp/par/runs/${k}__${e}__${s}/${stage%:}.log"
    if grep -q "^ gpu  *| $gpu " "$log" && grep -q '^Backend: ' "$log"; then
        n_checked=$((n_checked + 1))
    else
        echo "  $log: no --gpu $gpu or no backend line"
    fi
done <<EOF
$(grep ': started on GPU ' "$tmp/par.out")
EOF
check "all 8 runs got their --gpu and logged their backend" "[ $n_checked -eq 8 ]"
check "both GPUs were used" "grep -q 'started on GPU 0' $tmp/par.out && grep -q 'started on GPU 1' $tmp/par.out"
check "without --gpus no run is given --gpu" "! grep -q '^ gpu  *| [0-9]' $tmp/seq/runs/*/*.log"

untimed "$tmp/seq/sweep.csv" > "$tmp/seq.csv"
untimed "$tmp/par/sweep.csv" > "$tmp/par.csv"
check "sweep.csv with --gpus equals the one without (rows in grid order)" \
    "[ \$(wc -l < $tmp/seq.csv) -eq 9 ] && cmp -s $tmp/seq.csv $tmp/par.csv"
[ $fail -ne 0 ] && diff "$tmp/seq.csv" "$tmp/par.csv"

# Stopped after 3 runs and resumed, both under --gpus: the same table again.
$sweep --grid "$grid" --out "$tmp/res" --gpus 0,1 --max_runs 3 > "$tmp/r1.out" 2>&1; rc=$?
check "--gpus --max_runs 3 stops after 3 runs" \
    "[ $rc -eq 0 ] && grep -q 'stopped after 3 runs' $tmp/r1.out && [ \$(tail -n +2 $tmp/res/sweep.csv | grep -c .) -eq 3 ]"
$sweep --grid "$grid" --out "$tmp/res" --gpus 1,0 > "$tmp/r2.out" 2>&1; rc=$?
check "resume under --gpus runs the other 5" "[ $rc -eq 0 ] && grep -q '^sweep: 5 runs now, 3 already done, 0 failed' $tmp/r2.out"
untimed "$tmp/res/sweep.csv" > "$tmp/res.csv"
check "the resumed sweep.csv equals the one without --gpus" "cmp -s $tmp/seq.csv $tmp/res.csv"

# A failing point under --gpus: K=0 is out of range; its pretrain is recorded as failed, its
# finetune as skipped, and the other GPU's point still runs.
$sweep --grid "K=0,2;history_max=5" --epoch 1 --out "$tmp/fail" --gpus 0,1 > "$tmp/f.out" 2>&1; rc=$?
csv=$tmp/fail/sweep.csv
check "--gpus: a failed run makes the exit code 1" "[ $rc -eq 1 ]"
check "--gpus: K=0 pretrain failed with why, finetune skipped" \
    "grep -q '^0,5,0,pretrain,failed,\"exit 2: timirec: error: --K: 0 is outside' $csv && grep -q '^0,5,0,finetune,skipped,pretrain did not succeed' $csv"
check "--gpus: the sweep went on, rows in grid order" \
    "[ \"\$(tail -n +2 $csv | cut -d, -f1,4,5 | tr '\n' ' ')\" = '0,pretrain,failed 0,finetune,skipped 2,pretrain,ok 2,finetune,ok ' ]"

# SIGTERM while two runs train: both children stop, nothing is recorded, exit 128 + 15.
long="$sweep --grid K=1,2 --stages pretrain --epoch 60 --out $tmp/int --gpus 0,1"
$long > "$tmp/i.out" 2>&1 &
pid=$!
i=0
while [ $i -lt 300 ] && ! { grep -q '"event": "epoch"' "$tmp/int/runs/K=1__seed=0/pretrain.jsonl" 2>/dev/null &&
                            grep -q '"event": "epoch"' "$tmp/int/runs/K=2__seed=0/pretrain.jsonl" 2>/dev/null; }; do
    sleep 0.05
    i=$((i + 1))
done
kill -TERM "$pid"
wait "$pid"; rc=$?
check "SIGTERM stops the sweep with 143, both running runs interrupted" \
    "[ $rc -eq 143 ] && [ \$(grep -c 'interrupted (not recorded)' $tmp/i.out) -eq 2 ]"
check "the interrupted runs are not in sweep.csv" "! grep -q ',pretrain,' $tmp/int/sweep.csv 2>/dev/null"

# Refused forms.
"$bin" sweep --grid K=1 --out "$tmp/bad" --path "$tmp/data" --dataset toy --gpus 0,0 > "$tmp/b1.out" 2>&1; rc=$?
check "--gpus 0,0 is refused" "[ $rc -eq 2 ] && grep -q 'must be distinct device ids' $tmp/b1.out"
"$bin" sweep --grid K=1 --out "$tmp/bad" --path "$tmp/data" --dataset toy --gpus x > "$tmp/b2.out" 2>&1; rc=$?
check "--gpus x is refused" "[ $rc -eq 2 ] && grep -q 'must be distinct device ids' $tmp/b2.out"
"$bin" sweep --grid K=1 --out "$tmp/bad" --path "$tmp/data" --dataset toy --gpus 0 --gpu 1 > "$tmp/b3.out" 2>&1; rc=$?
check "--gpus with a shared --gpu is refused" "[ $rc -eq 2 ] && grep -q 'do not pass --gpu too' $tmp/b3.out"
"$bin" sweep --grid "K=1;gpu=0,1" --out "$tmp/bad" --path "$tmp/data" --dataset toy --gpus 0 > "$tmp/b4.out" 2>&1; rc=$?
check "--gpus with gpu in the grid is refused" "[ $rc -eq 2 ] && grep -q 'do not pass --gpu in the grid too' $tmp/b4.out"

exit $fail
