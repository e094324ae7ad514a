#!/bin/sh
# Data-parallel training under mpirun (include/timirec/dist.h), through the real binary ($1):
#  * ml-100k, one epoch of pretrain then one of finetune, on 1 process and on 2 and 3 ranks:
#    every epoch loss within 1e-4 relative and every dev metric within 0.002 of one process's
#    (the batches are the same; only the order of the gradient sums differs);
#  * the same 2-rank run twice: the same checkpoint bytes (rank-order sums, run to run);
#  * the item-table gradients as touched rows and as the whole table (TIMIREC_GRAD_EXCHANGE):
#    the same checkpoint bytes, with the dense Adam and with LazyAdam;
#  * a 2-rank run interrupted mid-epoch (TIMIREC_TEST_STOP_AFTER) and resumed on 2 ranks ends
#    with the checkpoint and state bytes of the uninterrupted 2-rank run;
#  * a rank that stops answering (TIMIREC_TEST_COMM_SKIP) stops the job within the collective
#    timeout with a message naming the rank and the collective; the state saved before is
#    intact and --resume 1 continues to the uninterrupted result.
# SKIP without mpirun, without an MPI build, or without ../shared/data/ml-100k.
bin=${1:-bin/timirec}
data=../shared/data
. tests/mpi_common.sh
[ -r "$data/ml-100k/train.csv" ] || { echo "SKIP: $data/ml-100k absent"; exit 77; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
ranks() { n=$1; shift; if [ "$n" = 1 ]; then "$@"; else mpirun --oversubscribe -np "$n" "$@"; fi; }

# ---- ml-100k: N ranks against one process ----
ml="--model_name TiMiRec --path $data --dataset ml-100k --epoch 1 --lr 1e-4 --l2 1e-6 --history_max 20 --K 2 --add_pos 1 --add_trm 1 --temp 0.5 --n_layers 2 --test_epoch 0 --cache 0"
for n in 1 2 3; do
    for stage in pretrain finetune; do
        ranks $n "$bin" $ml --stage $stage --model_dir "$tmp/n$n/model/" --log_dir "$tmp/n$n/log/" \
            --json_log "$tmp/n$n/$stage.jsonl" > "$tmp/n$n.$stage.out" 2>&1
        check "$n rank(s) $stage exits 0" "[ $? -eq 0 ]"
    done
done
check "2 ranks log the data-parallel set-up" "grep -q '^Data-parallel: MPI .*2 ranks' $tmp/n2.pretrain.out"
check "one process logs none" "! grep -q '^Data-parallel' $tmp/n1.pretrain.out"
for n in 1 2 3; do
    for stage in pretrain finetune; do epoch_numbers "$tmp/n$n/$stage.jsonl" > "$tmp/n$n.$stage.num"; done
done
for n in 2 3; do
    for stage in pretrain finetune; do
        check "$n ranks $stage: loss within 1e-4 relative, dev within 0.002 ($(cat $tmp/n$n.$stage.num) vs $(cat $tmp/n1.$stage.num))" \
            "epochs_close $tmp/n1.$stage.num $tmp/n$n.$stage.num"
    done
done

# ---- a small synthetic dataset for the bit-for-bit checks ----
"$bin" synth --out "$tmp/data" --dataset toy --users 200 --items 120 --n_clusters 6 --seq_len 14 --negatives 20 >/dev/null || { echo "FAIL: synth"; exit 1; }
toy="--model_name TiMiRec --path $tmp/data --dataset toy --epoch 3 --batch_size 50 --emb_size 16 --history_max 10 --stage finetune --n_layers 2 --temp 0.5 --check_epoch 0"
ck="TiMiRec/TiMiRec__toy__0__lr=0.001__l2=0__emb_size=16__attn_size=8__K=2__temp=0.5__add_pos=1__add_trm=1__n_layers=2.safetensors"
# Every toy run trains in $tmp/run (the checkpoint records its paths), then moves to $tmp/NAME;
# a --resume 1 run moves NAME back first.
toy_run() { # name nranks [env...]; $TOY_EXTRA: more flags
    name=$1 n=$2; shift 2
    rm -rf "$tmp/run"
    [ -d "$tmp/$name" ] && mv "$tmp/$name" "$tmp/run"
    env "$@" sh -c "mpirun --oversubscribe -np $n $bin $toy --model_dir $tmp/run/ --log_dir $tmp/run/ $TOY_EXTRA" > "$tmp/$name.out" 2>&1
    rc=$?
    mv "$tmp/run" "$tmp/$name"
    return $rc
}
toy_run a 2 X=1; rc=$?
check "2 ranks on toy exit 0" "[ $rc -eq 0 ]"
toy_run b 2 X=1
check "the same 2-rank run twice: same checkpoint bytes" "cmp -s $tmp/a/$ck $tmp/b/$ck"
toy_run rows 2 TIMIREC_GRAD_EXCHANGE=rows; toy_run dense 2 TIMIREC_GRAD_EXCHANGE=dense
check "touched-rows exchange = whole-table exchange (Adam), byte for byte" \
    "grep -q 'exchanged as touched rows' $tmp/rows.out && grep -q 'exchanged as dense' $tmp/dense.out && cmp -s $tmp/rows/$ck $tmp/dense/$ck"
TOY_EXTRA="--optimizer LazyAdam"; export TOY_EXTRA
toy_run lrows 2 TIMIREC_GRAD_EXCHANGE=rows; toy_run ldense 2 TIMIREC_GRAD_EXCHANGE=dense
check "touched-rows exchange = whole-table exchange (LazyAdam), byte for byte" "cmp -s $tmp/lrows/$ck $tmp/ldense/$ck"
TOY_EXTRA=""

# Full-catalog evaluation (--test_all 1) split over 3 ranks: the metrics of one process.
"$bin" $toy --epoch 1 --test_all 1 --model_dir "$tmp/all1/" --log_dir "$tmp/all1/" > "$tmp/all1.out" 2>&1
mpirun --oversubscribe -np 3 "$bin" $toy --epoch 1 --test_all 1 --model_dir "$tmp/all3/" --log_dir "$tmp/all3/" > "$tmp/all3.out" 2>&1
check "full-catalog test metrics on 3 ranks = one process's" \
    "grep -q '^Test After' $tmp/all1.out && [ \"\$(grep '^Test After' $tmp/all1.out)\" = \"\$(grep '^Test After' $tmp/all3.out)\" ]"

# ---- interruption and resume on 2 ranks ----
toy_run s 2 TIMIREC_TEST_STOP_AFTER=5; rc=$?
check "interrupted 2-rank run exits 130 with the state saved" "[ $rc -eq 130 ] && grep -q 'state saved to' $tmp/s.out && [ -f $tmp/s/$ck.state ]"
TOY_EXTRA="--resume 1"; toy_run s 2 X=1; rc=$?; TOY_EXTRA=""
check "resumed on 2 ranks: exit 0, same checkpoint and state bytes as uninterrupted" \
    "[ $rc -eq 0 ] && grep -q '^Resume from' $tmp/s.out && cmp -s $tmp/a/$ck $tmp/s/$ck && cmp -s $tmp/a/$ck.state $tmp/s/$ck.state"

# ---- a rank that stops answering in epoch 2 (44 batches an epoch: the 60th step) ----
start=$(date +%s)
toy_run f 2 TIMIREC_COMM_TIMEOUT=3 TIMIREC_TEST_COMM_SKIP=1:loss@60; rc=$?
secs=$(( $(date +%s) - start ))
check "a silent rank stops the job (exit $rc, ${secs} s), naming a rank and the collective" \
    "[ $rc -ne 0 ] && [ $secs -lt 60 ] && grep -q 'timirec: rank [01] of 2: .*collective' $tmp/f.out"
check "the state of epoch 1 survived" "[ -f $tmp/f/$ck.state ]"
TOY_EXTRA="--resume 1"; toy_run f 2 X=1; rc=$?; TOY_EXTRA=""
check "resumed after the fault: exit 0, same checkpoint bytes as uninterrupted" "[ $rc -eq 0 ] && cmp -s $tmp/a/$ck $tmp/f/$ck"
exit $fail
