#!/bin/sh
# Interruption and resumption, numerical faults and memory limits of the training run:
#  * a run stopped mid-epoch and at an epoch end (TIMIREC_TEST_STOP_AFTER: a SIGINT after N
#    batches, deterministic) and resumed with --resume 1 ends with the same epoch lines, the
#    same test metrics and the same checkpoint and state bytes as the uninterrupted run, early
#    stop and best-checkpoint reload included, whatever the thread count of each piece;
#  * a real kill -INT / kill -TERM of a running process: exit 130 / 143, state saved, resumable;
#  * kill -9 at random moments, resumed each time: the best checkpoint is always readable and
#    the final result is still bit-identical;
#  * a resume with another option is refused, naming it (--optimizer too); LazyAdam resumes
#    bit for bit as well;
#  * a NaN written into a parameter (TIMIREC_TEST_NAN) stops training with exit 3, naming the
#    step, the tensor and the untouched best checkpoint; --detect_anomaly 1 names the first
#    non-finite intermediate; a healthy --detect_anomaly 1 run changes nothing;
#  * a request needing terabytes is refused at once with the amount, before allocating it.
bin=${1:-bin/timirec}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
# OpenMP threads spin while they wait; on a busy machine a passive wait keeps this test quick.
export OMP_WAIT_POLICY=passive

"$bin" synth --out "$tmp/data" --dataset tiny --users 60 --items 40 --n_clusters 4 --seq_len 10 --negatives 10 >/dev/null || { echo "FAIL: synth"; exit 1; }
# Finetune (dropout keyed by the step counter), 14 batches an epoch, early stop at epoch 21.
run="--model_name TiMiRec --path $tmp/data --dataset tiny --epoch 30 --early_stop 1 --batch_size 32 --emb_size 8 --attn_size 4 --history_max 8 --stage finetune --n_layers 2 --check_epoch 0 --model_dir $tmp/model/ --log_dir $tmp/log/"
ckpt="$tmp/model/TiMiRec/TiMiRec__tiny__0__lr=0.001__l2=0__emb_size=8__attn_size=4__K=2__temp=1__add_pos=1__add_trm=1__n_layers=2.safetensors"
state="$ckpt.state"
epochs() { grep -E '^(Epoch |Early stop|Test After)' "$@" | sed 's/\[[0-9.]* s\]//g'; }

"$bin" $run --threads 1 > "$tmp/full.out" 2>&1; rc=$?
check "uninterrupted run exits 0 and stops early at 21" "[ $rc -eq 0 ] && grep -q 'Early stop at 21' $tmp/full.out"
check "memory estimate printed" "grep -Eq '^Memory: about [0-9.]+ [KM]iB \(parameters, gradients and Adam moments' $tmp/full.out"
check "state written at the end of the run" "[ -f '$state' ]"
epochs "$tmp/full.out" > "$tmp/full.epochs"
cp "$ckpt" "$tmp/full.ckpt"; cp "$state" "$tmp/full.state"
rm -rf "$tmp/model" "$tmp/log"

# Stopped after 20 batches (epoch 2, batch 6 of 14), then at 10 more (epoch 3, batch 2), then
# exactly at the end of epoch 5 (28 more), then resumed to the end. The second piece runs on 2
# threads (results do not depend on the thread count); the rest on 1, as the checkpoint's
# metadata records the options (the best epoch's checkpoint is written by the last piece).
TIMIREC_TEST_STOP_AFTER=20 "$bin" $run --threads 1 > "$tmp/p1.out" 2>&1; rc1=$?
check "hooked interrupt: exit 130, says where and how to continue" "[ $rc1 -eq 130 ] && grep -q 'Interrupted (SIGINT) in epoch 2 after batch 6 of 14: state saved to .*\.state; to continue, run the same command with --resume 1' $tmp/p1.out"
TIMIREC_TEST_STOP_AFTER=10 "$bin" $run --threads 2 --resume 1 > "$tmp/p2.out" 2>&1; rc2=$?
check "resumed where it stopped" "grep -q 'Resume from .*: 1 epochs done, epoch 2 from batch 7 (step 20)' $tmp/p2.out"
TIMIREC_TEST_STOP_AFTER=40 "$bin" $run --threads 1 --resume 1 > "$tmp/p3.out" 2>&1; rc3=$?
check "an interrupt on an epoch's last batch ends that epoch first" "[ $rc2 -eq 130 ] && [ $rc3 -eq 130 ] && grep -q 'Interrupted (SIGINT) before epoch 6: state saved' $tmp/p3.out"
"$bin" $run --threads 1 --resume 1 > "$tmp/p4.out" 2>&1; rc4=$?
check "last piece exits 0 after early stop and best reload" "[ $rc4 -eq 0 ] && grep -q 'Early stop at 21' $tmp/p4.out && grep -q '^Load model from' $tmp/p4.out"
epochs "$tmp/p1.out" "$tmp/p2.out" "$tmp/p3.out" "$tmp/p4.out" | sed 's/^[^:]*://' > "$tmp/pieces.epochs"
check "same epoch lines (loss, dev), early stop and test metrics as uninterrupted" "cmp -s $tmp/full.epochs $tmp/pieces.epochs"
check "same best checkpoint bytes" "cmp -s $tmp/full.ckpt '$ckpt'"
check "same final state bytes" "cmp -s $tmp/full.state '$state'"
"$bin" $run --threads 1 --resume 1 > "$tmp/p5.out" 2>&1; rc=$?
check "resuming a finished run just tests again" "[ $rc -eq 0 ] && [ \"\$(grep '^Test After' $tmp/p5.out)\" = \"\$(grep '^Test After' $tmp/full.out)\" ] && ! grep -q '^Epoch ' $tmp/p5.out"

# A state of other options is refused, naming each difference (the default checkpoint name
# holds lr: name the checkpoint, so that the state of the other lr is found).
"$bin" $run --threads 1 --resume 1 --model_path "$ckpt" --lr 0.002 --num_neg 2 > "$tmp/bad.out" 2>&1; rc=$?
check "other options refused (exit 2), each named" "[ $rc -eq 2 ] && grep -q -- '--lr 0.001 in the state, 0.002 now' $tmp/bad.out && grep -q -- '--num_neg 1 in the state, 2 now' $tmp/bad.out"
check "the refused resume left the checkpoint alone" "cmp -s $tmp/full.ckpt '$ckpt'"
"$bin" $run --threads 1 --resume 1 --model_path "$ckpt" --optimizer LazyAdam > "$tmp/lz0.out" 2>&1; rc=$?
check "an Adam state refused by --optimizer LazyAdam (exit 2)" "[ $rc -eq 2 ] && grep -q -- '--optimizer Adam in the state, LazyAdam now' $tmp/lz0.out"
# LazyAdam stopped mid-epoch and resumed: the same final state bytes (its per-row step counts
# included) as the uninterrupted LazyAdam run.
lazy="--model_name TiMiRec --path $tmp/data --dataset tiny --epoch 3 --batch_size 32 --emb_size 8 --attn_size 4 --history_max 8 --stage finetune --n_layers 2 --check_epoch 0 --optimizer LazyAdam --threads 1"
lzstate="TiMiRec/TiMiRec__tiny__0__lr=0.001__l2=0__emb_size=8__attn_size=4__K=2__temp=1__add_pos=1__add_trm=1__n_layers=2.safetensors.state"
"$bin" $lazy --model_dir "$tmp/lz/" --log_dir "$tmp/lzlog/" > "$tmp/lz1.out" 2>&1; rc1=$?
cp "$tmp/lz/$lzstate" "$tmp/lzfull.state"; rm -rf "$tmp/lz" "$tmp/lzlog"
TIMIREC_TEST_STOP_AFTER=20 "$bin" $lazy --model_dir "$tmp/lz/" --log_dir "$tmp/lzlog/" > "$tmp/lz2.out" 2>&1; rc2=$?
"$bin" $lazy --model_dir "$tmp/lz/" --log_dir "$tmp/lzlog/" --resume 1 > "$tmp/lz3.out" 2>&1; rc3=$?
check "LazyAdam resumed mid-epoch ends with the uninterrupted run's state bytes" "[ $rc1 -eq 0 ] && [ $rc2 -eq 130 ] && [ $rc3 -eq 0 ] && grep -q '^Optimizer: LazyAdam' $tmp/lz1.out && cmp -s $tmp/lzfull.state '$tmp/lz/$lzstate'"
"$bin" $run --threads 1 --resume 1 --epoch 0 --log_dir "$tmp/log2/" > "$tmp/ok.out" 2>&1; rc=$?
check "options that change nothing (epoch bound, logs, threads) may differ" "[ $rc -eq 0 ]"
rm -rf "$tmp/model" "$tmp/log"
"$bin" $run --threads 1 --resume 1 --epoch 1 > "$tmp/nostate.out" 2>&1; rc=$?
check "--resume 1 without a state starts from the start" "[ $rc -eq 0 ] && grep -q 'No state to resume at' $tmp/nostate.out"

# Real signals: SIGINT and SIGTERM to a running process (a long run, stopped by the signal).
long="$run --epoch 100000 --early_stop 0 --threads 1"
for sig in INT TERM; do
    rm -rf "$tmp/model" "$tmp/log"
    out="$tmp/sig$sig.out"
    : > "$out"
    "$bin" $long >> "$out" 2>&1 &
    pid=$!
    i=0; while [ $i -lt 400 ] && ! grep -q '^Epoch 2 ' "$out"; do sleep 0.05; i=$((i + 1)); done
    kill -$sig $pid; wait $pid; rc=$?
    want=130; [ $sig = TERM ] && want=143
    check "kill -$sig during training: exit $want, state saved" "[ $rc -eq $want ] && grep -q 'Interrupted (SIG$sig) .*state saved to' $out && [ -f '$state' ]"
done
"$bin" $long --resume 1 --epoch 4 > "$tmp/sig2.out" 2>&1; rc=$?
check "a signalled run resumes and finishes" "[ $rc -eq 0 ] && grep -q '^Resume from' $tmp/sig2.out && grep -q '^Test After Training' $tmp/sig2.out"

# kill -9 at arbitrary moments (a slower run: 107 batches an epoch, 80 epochs), resuming each
# time: no error on resume, the best checkpoint always whole, and the same end as without kills.
k9="$run --batch_size 4 --epoch 80 --early_stop 0 --threads 1"
"$bin" $k9 > "$tmp/k9full.out" 2>&1
cp "$ckpt" "$tmp/k9full.ckpt"
rm -rf "$tmp/model" "$tmp/log"
kills=0
for delay in 0.2 0.1 0.3 0.15 0.25 0.05 0.12 0.18; do
    "$bin" $k9 --resume 1 > "$tmp/k9.out" 2>&1 &
    pid=$!
    sleep $delay
    kill -9 $pid 2>/dev/null && kills=$((kills + 1))
    wait $pid 2>/dev/null
    if grep -q 'error' "$tmp/k9.out"; then echo "FAIL: resume after kill -9: $(grep error "$tmp/k9.out")"; fail=1; fi
    if [ -f "$ckpt" ]; then
        "$bin" $k9 --load 1 --train 0 --model_path "$ckpt" --log_dir "$tmp/klog/" > "$tmp/k9load.out" 2>&1 || { echo "FAIL: checkpoint unreadable after kill -9 (delay $delay)"; fail=1; }
    fi
done
"$bin" $k9 --resume 1 > "$tmp/k9end.out" 2>&1; rc=$?
check "after $kills kill -9: the resumed run ends with the uninterrupted test metrics and checkpoint" "[ $rc -eq 0 ] && [ \"\$(grep '^Test After' $tmp/k9end.out)\" = \"\$(grep '^Test After' $tmp/k9full.out)\" ] && cmp -s $tmp/k9full.ckpt '$ckpt'"
touch "$ckpt.tmp.999999999" "$state.tmp.1"
"$bin" $k9 --resume 1 > "$tmp/k9tmp.out" 2>&1
check "temporary files of dead writers removed, a live one's kept" "[ \$(ls $tmp/model/TiMiRec | grep -c '\.tmp\.') -eq 1 ] && [ -f '$state.tmp.1' ] && grep -q 'Removed .*tmp.999999999 (left by an interrupted write)' $tmp/k9tmp.out"

# Numerical faults: one epoch, then a NaN written into W1 at step 20 (epoch 2, batch 7).
rm -rf "$tmp/model" "$tmp/log"
"$bin" $run --threads 1 --epoch 1 > /dev/null 2>&1
cp "$ckpt" "$tmp/e1.ckpt"
TIMIREC_TEST_NAN=interest_extractor.W1.weight:20 "$bin" $run --threads 1 --resume 1 > "$tmp/nan.out" 2>&1; rc=$?
check "NaN parameter: exit 3" "[ $rc -eq 3 ]"
check "names the step, the loss and the parameter" "grep -q 'non-finite value at epoch 2, batch 7 of 14 (step 20): loss = nan; .*first non-finite parameter: interest_extractor.W1.weight\[0, 0\] = nan' $tmp/nan.out"
check "names the untouched best checkpoint" "grep -q 'the best checkpoint .*n_layers=2.safetensors (epoch 1) is left as it was' $tmp/nan.out && cmp -s $tmp/e1.ckpt '$ckpt'"
TIMIREC_TEST_NAN=interest_extractor.W1.weight:20 "$bin" $run --threads 1 --resume 1 --detect_anomaly 1 > "$tmp/nan2.out" 2>&1; rc=$?
check "--detect_anomaly 1 names the first non-finite intermediate (t = tanh(x W1^T + b1))" "[ $rc -eq 3 ] && grep -q 'first non-finite intermediate: extractor.t = tanh(x W1^T + b1) (B, L, a)\[0, 0, 0\] = nan' $tmp/nan2.out"
TIMIREC_TEST_NAN=interest_predictor.rnn.weight_hh_l0:20 "$bin" $run --threads 1 --resume 1 --detect_anomaly 1 > "$tmp/nan3.out" 2>&1; rc=$?
check "... and in the predictor: the GRU gates" "[ $rc -eq 3 ] && grep -q 'first non-finite intermediate: predictor.gates (r, z, n) (T, 3d)' $tmp/nan3.out"
rm -rf "$tmp/model" "$tmp/log"
"$bin" $run --threads 1 --detect_anomaly 1 > "$tmp/anom.out" 2>&1; rc=$?
check "a healthy run with --detect_anomaly 1: same results" "[ $rc -eq 0 ] && [ \"\$(epochs $tmp/anom.out)\" = \"\$(cat $tmp/full.epochs)\" ]"

# A request that needs terabytes is refused before it is allocated (long histories, so the
# workspace is batch 2^20 x history 512 x emb 256).
"$bin" synth --out "$tmp/data" --dataset long --users 30 --items 200 --seq_len 600 --min_len 560 --negatives 5 >/dev/null
start=$(date +%s)
"$bin" --model_name TiMiRec --path "$tmp/data" --dataset long --stage pretrain --emb_size 256 --batch_size 1048576 --history_max 512 --model_dir "$tmp/model/" --log_dir "$tmp/log/" > "$tmp/big.out" 2>&1; rc=$?
secs=$(( $(date +%s) - start ))
check "terabyte request refused (exit 2) with the amount, in ${secs}s" "[ $rc -eq 2 ] && grep -Eq 'this run needs about [0-9.]+ (TiB|PiB) of memory \\(.*model workspace [0-9.]+ TiB.*\\), but this machine has [0-9.]+ [MGT]iB: lower --batch_size' $tmp/big.out && [ $secs -lt 10 ]"
# Again with the dataset cache this first run wrote: mapped, and refused all the same.
"$bin" --model_name TiMiRec --path "$tmp/data" --dataset long --stage pretrain --emb_size 256 --batch_size 1048576 --history_max 512 --model_dir "$tmp/model/" --log_dir "$tmp/log/" > "$tmp/big2.out" 2>&1; rc=$?
check "... from the mapped cache too, counting the data and the program" "[ $rc -eq 2 ] && grep -q 'Dataset cache: read' $tmp/big2.out && grep -Eq 'this run needs about [0-9.]+ (TiB|PiB) of memory \\(.*data [0-9.]+ [KM]iB, program [0-9.]+ MiB\\)' $tmp/big2.out"

"$bin" --model_name TiMiRec --help > "$tmp/h" 2>&1
check "--help lists --resume and --detect_anomaly" "grep -q -- '--resume .*state' $tmp/h && grep -q -- '--detect_anomaly' $tmp/h"
exit $fail
