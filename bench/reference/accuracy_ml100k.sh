#!/bin/sh
# The reference framework's side of bench/accuracy_ml100k.sh: the same two stages with the same
# settings (lr 1e-3, l2 1e-6, K 2, history_max 20, 20 epochs, temp 0.5, n_layers 2), run by
# ReChorus itself. Needs a copy of the reference's src/ (branch CIKM22) and the dataset under
# local/rechorus: git -C REPO archive CIKM22 -- src | tar x -C local/rechorus;
# cp -r ../shared/data/ml-100k local/rechorus/data/. Prints both stages' test lines.
# usage: sh bench/reference/accuracy_ml100k.sh [python3] [seed]
py=${1:-python3}
seed=${2:-0}
here=$(cd "$(dirname "$0")" && pwd)
cd local/rechorus 2>/dev/null || { echo "SKIP: no local/rechorus"; exit 0; }
common="--model_name TiMiRec --lr 1e-3 --l2 1e-6 --history_max 20 --K 2 --add_pos 1 --add_trm 1 --dataset ml-100k --path ../data --epoch 20 --random_seed $seed --num_workers 0"
start=$(date +%s)
$py "$here/run_rechorus.py" src $common --stage pretrain > pre.log 2>&1 || { tail pre.log; exit 1; }
$py "$here/run_rechorus.py" src $common --stage finetune --temp 0.5 --n_layers 2 > fine.log 2>&1 || { tail fine.log; exit 1; }
echo "pretrain: $(grep -a 'Test After Training' pre.log)"
echo "finetune: $(grep -a 'Test After Training' fine.log)"
echo "both stages: $(( $(date +%s) - start )) s"
