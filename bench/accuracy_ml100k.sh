#!/bin/sh
# Accuracy of both stages on ../shared/data/ml-100k with the reference's settings and a fixed
# budget: lr 1e-3, l2 1e-6, K 2, history_max 20, 20 epochs per stage (early stop as the
# reference), finetune temp 0.5 and n_layers 2. Prints each stage's test metrics and appends
# them to bench/results/accuracy_ml100k.csv. Finetune should beat pretrain.
# usage: sh bench/accuracy_ml100k.sh [bin/timirec] [seed]
bin=${1:-bin/timirec}
seed=${2:-0}
[ -f ../shared/data/ml-100k/train.csv ] || { echo "SKIP: ../shared/data/ml-100k absent"; exit 0; }
out=$(mktemp -d) || exit 1
trap 'rm -rf "$out"' EXIT
common="--model_name TiMiRec --path ../shared/data --dataset ml-100k --lr 1e-3 --l2 1e-6 --K 2 --history_max 20 --epoch 20 --random_seed $seed --model_dir $out/model/ --log_dir $out/log/"
start=$(date +%s)
"$bin" $common --stage pretrain > "$out/pre.txt" || exit 1
"$bin" $common --stage finetune --temp 0.5 --n_layers 2 --check_epoch 0 > "$out/fine.txt" || exit 1
secs=$(( $(date +%s) - start ))
pre=$(grep '^Test After Training' "$out/pre.txt" | sed 's/.*(\(.*\))/\1/')
fine=$(grep '^Test After Training' "$out/fine.txt" | sed 's/.*(\(.*\))/\1/')
echo "pretrain test: $pre"
echo "finetune test: $fine"
echo "both stages: ${secs} s"
csv=bench/results/accuracy_ml100k.csv
[ -f "$csv" ] || echo "device,date,commit,seed,stage,metrics,seconds_both_stages" > "$csv"
device=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //; s/,/ /g') 
commit=$(git rev-parse --short HEAD 2>/dev/null)
for s in pretrain finetune; do
    m=$pre; [ $s = finetune ] && m=$fine
    echo "$device x$(nproc),$(date -u +%Y-%m-%d),$commit,$seed,$s,\"$m\",$secs" >> "$csv"
done
hr_pre=$(echo "$pre" | sed 's/.*HR@5:\([0-9.]*\).*/\1/')
hr_fine=$(echo "$fine" | sed 's/.*HR@5:\([0-9.]*\).*/\1/')
awk -v a="$hr_fine" -v b="$hr_pre" 'BEGIN { if (a > b) print "finetune beats pretrain on HR@5 (" a " > " b ")"; else print "finetune does NOT beat pretrain on HR@5 (" a " <= " b ")" }'
