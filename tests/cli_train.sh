#!/bin/sh
# The reference's command line end to end on a tiny synthetic dataset: both stages (the
# finetune stage finds the pretrain checkpoint by the naming rule), logs in the reference's
# shape and JSON lines, determinism, --load 1 --train 0 on the saved checkpoint, config files
# and flag errors naming the flag and its range.
bin=${1:-bin/timirec}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }

"$bin" synth --out "$tmp/data" --dataset toy --users 120 --items 60 --n_clusters 6 --seq_len 12 --negatives 20 >/dev/null || { echo "FAIL: synth"; exit 1; }
common="--model_name TiMiRec --path $tmp/data --dataset toy --epoch 3 --batch_size 64 --model_dir $tmp/model/ --log_dir $tmp/log/ --emb_size 16 --history_max 10"

"$bin" $common --stage finetune --n_layers 2 --epoch 1 > "$tmp/scratch.out" 2>&1
check "finetune without a pretrained extractor says so" "grep -q 'Train from scratch!' $tmp/scratch.out"
rm -rf "$tmp/model" "$tmp/log"

"$bin" $common --stage pretrain > "$tmp/pre.out" 2>&1; rc=$?
check "pretrain exits 0" "[ $rc -eq 0 ]"
check "pretrain prints #params" "grep -q '^#params: ' $tmp/pre.out"
check "the log names the device that does the work" "grep -Eq '^Device: cpu \([0-9]+ threads\)' $tmp/pre.out"
check "epoch lines in the reference's shape" "grep -Eq '^Epoch 1 +loss=[0-9.]+ \[[0-9.]+ s\] +dev=\(HR@5:[0-9.]+,NDCG@5:[0-9.]+\) \[[0-9.]+ s\] \*' $tmp/pre.out"
check "pretrain writes the extractor checkpoint" "[ -f $tmp/model/TiMiRec/Extractor__toy__0__emb_size=16__K=2__add_pos=1__add_trm=1.safetensors ]"
check "test metrics at every topk" "grep -Eq '^Test After Training: \(HR@5:[0-9.]+,NDCG@5:[0-9.]+,HR@10:.*HR@50:[0-9.]+,NDCG@50:[0-9.]+\)' $tmp/pre.out"

"$bin" $common --stage finetune --n_layers 2 --temp 0.5 --check_epoch 1 > "$tmp/fine.out" 2>&1; rc=$?
check "finetune exits 0" "[ $rc -eq 0 ]"
check "finetune loads the pretrained extractor" "grep -q 'Load model from .*Extractor__toy__0__emb_size=16__K=2' $tmp/fine.out"
check "check_epoch prints the intents" "grep -q '^pred_intent' $tmp/fine.out && grep -q '^target_intent' $tmp/fine.out"
log=$(ls $tmp/log/TiMiRec/*n_layers=2.txt)
check "log file written" "grep -q 'Test After Training' '$log'"
json="${log%.txt}.jsonl"
check "JSON lines: start, 3 epochs, test" "[ \$(grep -c '\"event\": \"epoch\"' '$json') -eq 3 ] && grep -q '\"event\": \"test\"' '$json' && grep -q '\"event\": \"start\"' '$json'"

# Determinism: same flags, same metrics.
"$bin" $common --stage pretrain --log_file "$tmp/again.txt" > "$tmp/pre2.out" 2>&1
check "same seed, same results" "[ \"\$(grep '^Test After' $tmp/pre.out)\" = \"\$(grep '^Test After' $tmp/pre2.out)\" ]"
"$bin" $common --stage pretrain --random_seed 1 > "$tmp/pre3.out" 2>&1
check "another seed, other results" "[ \"\$(grep '^Epoch 1 ' $tmp/pre.out | awk '{print \$3}')\" != \"\$(grep '^Epoch 1 ' $tmp/pre3.out | awk '{print \$3}')\" ]"

# Evaluate a saved checkpoint: identical test metrics.
ckpt=$(ls $tmp/model/TiMiRec/TiMiRec__toy*n_layers=2.safetensors)
"$bin" $common --stage finetune --n_layers 2 --temp 0.5 --load 1 --train 0 --model_path "$ckpt" > "$tmp/eval.out" 2>&1
check "--load 1 --train 0 reproduces the test metrics" "[ \"\$(grep '^Test After' $tmp/fine.out)\" = \"\$(grep '^Test After' $tmp/eval.out)\" ]"
"$bin" $common --stage finetune --n_layers 2 --K 3 --load 1 --train 0 --model_path "$ckpt" > "$tmp/bad.out" 2>&1; rc=$?
check "a checkpoint of another K is refused, naming the tensor" "[ $rc -ne 0 ] && grep -q 'W2.weight has shape \[2, 8\], this model needs \[3, 8\] (another K?' $tmp/bad.out"

# recommend: a row per user with a history, k items best first, none of the user's own items.
"$bin" recommend --model_path "$ckpt" --path "$tmp/data" --dataset toy --topk 7 --out "$tmp/recs.tsv" > "$tmp/rec.out" 2>&1; rc=$?
check "recommend exits 0" "[ $rc -eq 0 ]"
check "recommend header" "[ \"\$(head -1 $tmp/recs.tsv)\" = \"\$(printf 'user_id\\trec_items\\tscores')\" ]"
users=$(cat "$tmp"/data/toy/train.csv "$tmp"/data/toy/dev.csv "$tmp"/data/toy/test.csv | awk -F'\t' '$1 ~ /^[0-9]+$/ {print $1}' | sort -u | wc -l)
check "one row per user with a history ($users)" "[ \$(tail -n +2 $tmp/recs.tsv | wc -l) -eq $users ]"
bad=$(awk -F'\t' '
    FNR == 1 { next }
    FILENAME != rec { seen[$1 " " $2] = 1; next }
    {
        gsub(/[][ ]/, "", $2); gsub(/[][ ]/, "", $3)
        n = split($2, items, ","); split($3, scores, ",")
        if (n != 7) { print "count " $1; next }
        for (i = 1; i <= n; i++) {
            if (seen[$1 " " items[i]]) print "own item " $1 " " items[i]
            if (i > 1 && scores[i] + 0 > scores[i - 1] + 0) print "order " $1
        }
    }' rec="$tmp/recs.tsv" "$tmp"/data/toy/train.csv "$tmp"/data/toy/dev.csv "$tmp"/data/toy/test.csv "$tmp/recs.tsv" | head -3)
check "k items, best first, never the user's own (${bad:-none bad})" "[ -z \"$bad\" ]"

# Config files: flags override the file, whatever their order.
printf 'model_name = TiMiRec\nK = 3\nlr = 0.01\n# comment\n[section]\n' > "$tmp/c.ini"
"$bin" --lr 0.002 --config "$tmp/c.ini" $common --stage pretrain --epoch 0 > "$tmp/cfg.out" 2>&1
check "config value used" "grep -Eq '^ K +\| 3' $tmp/cfg.out"
check "flag overrides the config" "grep -Eq '^ lr +\| 0.002' $tmp/cfg.out"

# Errors name the flag and the range.
"$bin" --model_name TiMiRec --K 0 > "$tmp/e1" 2>&1; rc=$?
check "bad value: exit 2, names flag and range" "[ $rc -eq 2 ] && grep -q -- '--K: 0 is outside the accepted range \[1, 64\]' $tmp/e1"
"$bin" --model_name TiMiRec --colour 1 > "$tmp/e2" 2>&1; rc=$?
check "unknown flag: exit 2, named" "[ $rc -eq 2 ] && grep -q -- 'unknown flag --colour' $tmp/e2"
"$bin" --model_name TiMiRec --stage middle > "$tmp/e3" 2>&1; rc=$?
check "bad stage named" "[ $rc -eq 2 ] && grep -q -- '--stage' $tmp/e3"
"$bin" --model_name TiMiRec --help > "$tmp/h" 2>&1; rc=$?
check "--help lists every flag of the table" "[ $rc -eq 0 ] && grep -q -- '--history_max' $tmp/h && grep -q -- '--early_stop' $tmp/h && grep -q -- '--config' $tmp/h"
# A checkpoint whose empty tensors claim absurd shapes (no bytes, so the reader passes it).
hdr='{"interest_extractor.i_embeddings.weight":{"dtype":"F32","shape":[99999999999,0],"data_offsets":[0,0]},"interest_extractor.W1.weight":{"dtype":"F32","shape":[8,0],"data_offsets":[0,0]},"interest_extractor.W2.weight":{"dtype":"F32","shape":[2,0],"data_offsets":[0,0]}}'
len=$(printf '%s' "$hdr" | wc -c)
{ printf "$(printf '\\%03o' $((len % 256)) $((len / 256)) 0 0 0 0 0 0)"; printf '%s' "$hdr"; } > "$tmp/huge.safetensors"
"$bin" recommend --model_path "$tmp/huge.safetensors" --path "$tmp/data" --dataset toy --topk 5 --out "$tmp/h.tsv" > "$tmp/e4" 2>&1; rc=$?
check "recommend refuses absurd checkpoint shapes" "[ $rc -eq 1 ] && grep -q 'shapes out of range' $tmp/e4"
exit $fail
