#!/bin/sh
# --gpu: the reference's flag selects the CUDA backend. Without a usable GPU (or without a CUDA
# build) the run says so on stderr, logs "Backend: CPU (...why...)" and trains exactly as
# without the flag; with a GPU it logs "Backend: CUDA: <device>" and its losses follow the
# CPU's (the epoch loss printed to 4 decimals within 2e-4). "Device: " names what does the work.
bin=${1:-bin/timirec}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }

"$bin" synth --out "$tmp/data" --dataset toy --users 120 --items 60 --n_clusters 6 --seq_len 12 --negatives 20 >/dev/null || { echo "FAIL: synth"; exit 1; }
common="--model_name TiMiRec --path $tmp/data --dataset toy --epoch 2 --batch_size 64 --emb_size 16 --history_max 10 --stage finetune --n_layers 2 --temp 0.5"

"$bin" $common --model_dir "$tmp/cpu/" --log_dir "$tmp/cpu/" > "$tmp/cpu.out" 2>&1; rc=$?
check "CPU run exits 0" "[ $rc -eq 0 ]"
"$bin" $common --gpu 0 --model_dir "$tmp/gpu/" --log_dir "$tmp/gpu/" > "$tmp/gpu.out" 2> "$tmp/gpu.err"; rc=$?
check "--gpu 0 run exits 0" "[ $rc -eq 0 ]"
check "--gpu 0 logs its backend" "grep -q '^Backend: ' $tmp/gpu.out"
if grep -q '^Backend: CUDA: ' "$tmp/gpu.out"; then
    echo "a GPU is usable: $(grep '^Backend: ' "$tmp/gpu.out")"
    check "the log names the GPU as the device" "grep -q '^Device: cuda:0, ' $tmp/gpu.out"
    check "finite test metrics" "grep -Eq '^Test After Training: \(HR@5:[0-9.]+,NDCG@5:[0-9.]+' $tmp/gpu.out"
    l1=$(grep '^Epoch 2 ' "$tmp/cpu.out" | sed 's/.*loss=\([0-9.]*\).*/\1/')
    l2=$(grep '^Epoch 2 ' "$tmp/gpu.out" | sed 's/.*loss=\([0-9.]*\).*/\1/')
    check "epoch 2 loss close to the CPU's ($l2 vs $l1)" "awk -v a=$l1 -v b=$l2 'BEGIN { d = a - b; exit !(d <= 2e-4 && d >= -2e-4) }'"
else
    check "the fallback is said on stderr" "grep -q 'warning: --gpu 0: training on the CPU' $tmp/gpu.err"
    check "the log says why" "grep -q '^Backend: CPU (CUDA asked for' $tmp/gpu.out"
    check "the log names the CPU as the device" "grep -q '^Device: cpu (' $tmp/gpu.out"
    check "same results as the CPU run" "[ \"\$(grep -E '^(Epoch|Test After)' $tmp/cpu.out | sed 's/\[[0-9.]* s\]//g')\" = \"\$(grep -E '^(Epoch|Test After)' $tmp/gpu.out | sed 's/\[[0-9.]* s\]//g')\" ]"
fi
"$bin" $common --gpu "" --model_dir "$tmp/none/" --log_dir "$tmp/none/" > "$tmp/none.out" 2>&1
check "--gpu \"\" is the CPU, silently" "! grep -q '^Backend: ' $tmp/none.out"
exit $fail
