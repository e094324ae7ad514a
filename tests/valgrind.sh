#!/bin/sh
# `make valgrind`: a tiny end-to-end run under valgrind's memcheck, every step of it:
# synth (generator + prepare recipe), prepare from a raw log, data, both training stages for one
# epoch (the finetune stage loads the pretrain checkpoint, each stage reloads its best one), a
# strict reload with --load 1 --train 0 from a config file, and recommend. Any invalid read or
# write, use of uninitialised memory, or definitely/possibly lost block fails it.
# The binary ($1) must be built for the baseline CPU (ARCH=, see the Makefile: valgrind does not
# know every AVX-512 instruction) and without CUDA. Two OpenMP threads, so the parallel regions
# run; libgomp's never-joined worker threads are suppressed (tests/valgrind.supp says why).
set -u
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v valgrind >/dev/null 2>&1; then
    echo "SKIP: valgrind not found"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=2
vg="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,possible
    --show-leak-kinds=definite,possible --track-origins=yes --num-callers=30
    --suppressions=$here/valgrind.supp"
failed=0
step() {
    name=$1; shift
    start=$(date +%s)
    $vg "$@" >"$tmp/$name.log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    if [ $rc -eq 0 ]; then
        echo "ok    $name (${secs}s)"
    else
        failed=1
        echo "FAIL  $name (exit $rc; 99: valgrind found errors)"
        sed 's/^/    | /' "$tmp/$name.log" | tail -n 60
    fi
}
sizes="--emb_size 8 --attn_size 4 --K 2 --history_max 5 --n_layers 2 --batch_size 16"
common="--path $tmp/data --dataset tiny --epoch 1 $sizes --model_dir $tmp/model/ --log_dir $tmp/log/"

step synth "$bin" synth --out "$tmp/data" --dataset tiny --users 40 --items 30 --n_clusters 5 \
    --seq_len 8 --negatives 10
printf '1\t10\t4\t100\n1\t11\t3\t101\n2\t10\t5\t102\n2\t12\t1\t103\n2\t13\t2\t104\n3\t11\t4\t99\n3\t12\t5\t105\n3\t14\t5\t106\n3\t15\t5\t107\n4\t16\t2\t108\n4\t17\t2\t108\n' \
    >"$tmp/u.data"
step prepare "$bin" prepare --format udata "$tmp/u.data" "$tmp/data/raw" --neg_items 2
step data "$bin" data --path "$tmp/data" --dataset tiny --batch_size 16
step pretrain "$bin" $common --stage pretrain
step finetune "$bin" $common --stage finetune
cat >"$tmp/eval.ini" <<INI
# evaluate the finetuned model again, strictly reloaded
[run]
stage = finetune
load = 1
train = 0
INI
step reload "$bin" --config "$tmp/eval.ini" $common
model=$(ls "$tmp"/model/TiMiRec/TiMiRec__*.safetensors)
step recommend "$bin" recommend --model_path "$model" --path "$tmp/data" --dataset tiny --topk 5 \
    --out "$tmp/recs.tsv"
[ -s "$tmp/recs.tsv" ] || { echo "FAIL  recommend wrote no $tmp/recs.tsv"; failed=1; }
if [ $failed -ne 0 ]; then echo "valgrind: errors found"; exit 1; fi
echo "valgrind: every step clean"
