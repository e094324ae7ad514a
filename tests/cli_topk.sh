#!/bin/sh
# Full-catalog evaluation and retrieval from the command line on a tiny synthetic dataset:
# --test_all 1 with --per_user_metrics (one row per test instance, its columns average to the
# printed test metrics), and `recommend` in the documented TSV shape: a header, one row per
# user with a history, [i1, i2, ...] best first, ties to the lower id, none of the user's
# train/dev/test items, lists shorter than --topk when fewer items are unseen; --stage and
# --retrieval interests (ComiRec's merged per-interest lists: the same lists as the max score
# for a pretrain model); errors for bad values. Data without negatives (synth --negatives 0):
# valid with --test_all 1, refused before training with --test_all 0; --eval_users N: the
# test instances of N users, the same N for the same seed, all of them when N covers them.
bin=${1:-bin/timirec}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }

"$bin" synth --out "$tmp/data" --dataset toy --users 90 --items 40 --n_clusters 5 --seq_len 12 --negatives 10 >/dev/null || { echo "FAIL: synth"; exit 1; }
common="--model_name TiMiRec --path $tmp/data --dataset toy --epoch 2 --batch_size 64 --model_dir $tmp/model/ --log_dir $tmp/log/ --emb_size 16 --history_max 10 --test_all 1 --topk 5,10,50 --metric NDCG,HR,MRR"

"$bin" $common --stage pretrain --per_user_metrics "$tmp/pu/pre.tsv" > "$tmp/pre.out" 2>&1; rc=$?
check "pretrain --test_all 1 exits 0" "[ $rc -eq 0 ]"
check "test metrics printed" "grep -Eq '^Test After Training: \(HR@5:[0-9.]+,MRR@5:[0-9.]+,NDCG@5:' $tmp/pre.out"
check "per-user file: header" "[ \"\$(head -1 $tmp/pu/pre.tsv)\" = \"\$(printf 'user_id\\titem_id\\trank\\tNDCG@5\\tNDCG@10\\tNDCG@50\\tHR@5\\tHR@10\\tHR@50\\tMRR@5\\tMRR@10\\tMRR@50')\" ]"
n_test=$(awk -F'\t' 'NR > 1' "$tmp/data/toy/test.csv" | wc -l)
check "per-user file: one row per test instance ($n_test)" "[ \$(tail -n +2 $tmp/pu/pre.tsv | wc -l) -eq $n_test ]"
# Column means, formatted as the log does (%.4f), equal the printed test metrics.
means=$(awk -F'\t' 'NR == 1 { for (i = 4; i <= NF; i++) name[i] = $i; next }
    { for (i = 4; i <= NF; i++) s[i] += $i; n++ }
    END { for (i = 4; i <= NF; i++) printf "%s:%.4f\n", name[i], s[i] / n }' "$tmp/pu/pre.tsv" | sort)
printed=$(grep '^Test After Training' "$tmp/pre.out" | sed 's/.*(\(.*\)).*/\1/' | tr ',' '\n' | sort)
check "per-user columns average to the printed metrics" "[ \"$means\" = \"$printed\" ]"
n_items=$(cat "$tmp"/data/toy/train.csv "$tmp"/data/toy/dev.csv "$tmp"/data/toy/test.csv | awk -F'\t' '$2 ~ /^[0-9]+$/ && $2 + 0 > m { m = $2 + 0 } END { print m }')
# A rank is between 1 and the number of items the user has not seen (plus the target).
check "ranks in range" "awk -F'\t' 'NR > 1 && (\$3 < 1 || \$3 > $n_items) { bad = 1 } END { exit bad }' $tmp/pu/pre.tsv"

"$bin" $common --stage finetune --n_layers 2 --per_user_metrics "$tmp/fine.tsv" > "$tmp/fine.out" 2>&1; rc=$?
check "finetune --test_all 1 exits 0" "[ $rc -eq 0 ] && [ -f $tmp/fine.tsv ]"
pre=$(ls $tmp/model/TiMiRec/Extractor__toy*.safetensors)
fine=$(ls $tmp/model/TiMiRec/TiMiRec__toy*.safetensors)

# recommend: format, exclusions, order, one row per user with a history.
seen_check() { # $1 = recs file, $2 = k; prints the first problems
    awk -F'\t' -v k="$2" -v n_items="$n_items" '
    FNR == 1 { next }
    FILENAME != rec { seen[$1 " " $2] = 1; nseen[$1] += !dup[$1 " " $2]++; next }
    {
        if ($2 !~ /^\[([0-9]+(, [0-9]+)*)?\]$/) { print "format " $1 ": " $2; next }
        it = $2; sc = $3; gsub(/[][ ]/, "", it); gsub(/[][ ]/, "", sc)
        n = split(it, items, ","); m = split(sc, scores, ",")
        want = n_items - nseen[$1]; if (want > k) want = k
        if (n != want || m != n) { print "count " $1 " " n " want " want; next }
        for (i = 1; i <= n; i++) {
            if (seen[$1 " " items[i]]) print "own item " $1 " " items[i]
            if (i > 1 && (scores[i] + 0 > scores[i - 1] + 0 || (scores[i] == scores[i - 1] && items[i] + 0 < items[i - 1] + 0))) print "order " $1
        }
    }' rec="$1" "$tmp"/data/toy/train.csv "$tmp"/data/toy/dev.csv "$tmp"/data/toy/test.csv "$1" | head -3
}
users=$(cat "$tmp"/data/toy/train.csv "$tmp"/data/toy/dev.csv "$tmp"/data/toy/test.csv | awk -F'\t' '$1 ~ /^[0-9]+$/ {print $1}' | sort -u | wc -l)

"$bin" recommend --model_path "$fine" --dataset toy --path "$tmp/data" --topk 50 --out "$tmp/recs.tsv" > "$tmp/rec.out" 2>&1; rc=$?
check "recommend exits 0" "[ $rc -eq 0 ]"
check "recommend header" "[ \"\$(head -1 $tmp/recs.tsv)\" = \"\$(printf 'user_id\\trec_items\\tscores')\" ]"
check "one row per user with a history ($users)" "[ \$(tail -n +2 $tmp/recs.tsv | wc -l) -eq $users ]"
bad=$(seen_check "$tmp/recs.tsv" 50)
check "topk 50 > unseen: every unseen item once, best first, ties to the lower id (${bad:-none bad})" "[ -z \"$bad\" ]"
"$bin" recommend --model_path "$fine" --dataset toy --path "$tmp/data" --topk 5 --out "$tmp/r5.tsv" >/dev/null 2>&1
bad=$(seen_check "$tmp/r5.tsv" 5)
check "topk 5 (${bad:-none bad})" "[ -z \"$bad\" ]"
check "topk 5 lists are the heads of the topk 50 lists" "[ \"\$(tail -n +2 $tmp/r5.tsv | cut -f2)\" = \"\$(tail -n +2 $tmp/recs.tsv | cut -f2 | awk -F', ' '{ s = \$1; for (i = 2; i <= 5 && i <= NF; i++) s = s \", \" \$i; if (NF > 5) s = s \"]\"; print s }')\" ]"

"$bin" recommend --model_path "$pre" --dataset toy --path "$tmp/data" --topk 8 --out "$tmp/p1.tsv" > /dev/null 2>&1
"$bin" recommend --model_path "$pre" --dataset toy --path "$tmp/data" --topk 8 --retrieval interests --out "$tmp/p2.tsv" > "$tmp/p2.out" 2>&1; rc=$?
check "--retrieval interests exits 0 and says so" "[ $rc -eq 0 ] && grep -q 'per-interest lists merged' $tmp/p2.out"
check "pretrain: merged per-interest lists = max-score lists" "cmp -s $tmp/p1.tsv $tmp/p2.tsv"
bad=$(seen_check "$tmp/p2.tsv" 8)
check "pretrain lists well formed (${bad:-none bad})" "[ -z \"$bad\" ]"
"$bin" recommend --model_path "$fine" --dataset toy --path "$tmp/data" --topk 8 --retrieval interests --out "$tmp/f2.tsv" > /dev/null 2>&1; rc=$?
bad=$(seen_check "$tmp/f2.tsv" 8)
check "finetune --retrieval interests well formed (${bad:-none bad})" "[ $rc -eq 0 ] && [ -z \"$bad\" ]"
"$bin" recommend --model_path "$fine" --dataset toy --path "$tmp/data" --topk 8 --stage pretrain --out "$tmp/f3.tsv" > "$tmp/f3.out" 2>&1; rc=$?
check "--stage pretrain on a finetune checkpoint scores by the interests" "[ $rc -eq 0 ] && grep -q 'pretrain score' $tmp/f3.out && cmp -s $tmp/f2.tsv $tmp/f3.tsv"

# No neg_items column (or empty lists): full-catalog evaluation only, said before training.
"$bin" synth --out "$tmp/data" --dataset noneg --users 90 --items 40 --n_clusters 5 --seq_len 12 --negatives 0 >/dev/null
check "synth --negatives 0: no neg_items column" "[ \"\$(head -1 $tmp/data/noneg/dev.csv)\" = \"\$(printf 'user_id\\titem_id\\ttime')\" ] && [ \$(awk -F'\\t' 'NF != 3' $tmp/data/noneg/test.csv | wc -l) -eq 0 ]"
nn="--model_name TiMiRec --path $tmp/data --dataset noneg --epoch 0 --batch_size 64 --model_dir $tmp/nnm/ --log_dir $tmp/nnl/ --emb_size 16 --history_max 10 --stage pretrain"
"$bin" $nn > "$tmp/nn0.out" 2>&1; rc=$?
check "no negatives, --test_all 0: refused before training, naming the file and both fixes" "[ $rc -eq 1 ] && grep -q 'noneg/dev.csv has no neg_items column' $tmp/nn0.out && grep -q 'add a neg_items column' $tmp/nn0.out && grep -q -- '--test_all 1' $tmp/nn0.out && ! grep -q '^Epoch' $tmp/nn0.out"
mkdir -p "$tmp/data/emptyneg" && cp "$tmp/data/toy/train.csv" "$tmp/data/emptyneg/"
for f in dev test; do sed 's/\t\[[0-9, ]*\]$/\t[]/' "$tmp/data/toy/$f.csv" > "$tmp/data/emptyneg/$f.csv"; done
"$bin" $nn --dataset emptyneg > "$tmp/nne.out" 2>&1; rc=$?
check "empty neg_items lists, --test_all 0: refused" "[ $rc -eq 1 ] && grep -q 'emptyneg/dev.csv has empty neg_items lists' $tmp/nne.out"
"$bin" $nn --test_all 1 --epoch 1 > "$tmp/nn1.out" 2>&1; rc=$?
check "no negatives, --test_all 1: trains and tests" "[ $rc -eq 0 ] && grep -q '^Epoch 1 ' $tmp/nn1.out && grep -q '^Test After Training' $tmp/nn1.out"
# The sample checks evaluate the initial model (--epoch 0): cheap, and the same in every run.
"$bin" $nn --test_all 1 --per_user_metrics "$tmp/nn_all.tsv" > "$tmp/nn2.out" 2>&1
n_nn=$(tail -n +2 "$tmp/data/noneg/test.csv" | wc -l)
"$bin" $nn --test_all 1 --eval_users 12 --per_user_metrics "$tmp/nn_s1.tsv" > "$tmp/nn3.out" 2>&1; rc=$?
check "--eval_users 12: 12 distinct test users" "[ $rc -eq 0 ] && [ \$(tail -n +2 $tmp/nn_s1.tsv | cut -f1 | sort -u | wc -l) -eq 12 ] && [ \$(tail -n +2 $tmp/nn_s1.tsv | wc -l) -eq 12 ]"
check "--eval_users: the sample's rows are rows of the full evaluation" "[ -z \"\$(tail -n +2 $tmp/nn_s1.tsv | grep -vxF -f $tmp/nn_all.tsv)\" ]"
"$bin" $nn --test_all 1 --eval_users 12 --per_user_metrics "$tmp/nn_s2.tsv" > /dev/null 2>&1
check "--eval_users: same seed, same sample" "cmp -s $tmp/nn_s1.tsv $tmp/nn_s2.tsv"
"$bin" $nn --test_all 1 --eval_users 12 --random_seed 3 --per_user_metrics "$tmp/nn_s3.tsv" > /dev/null 2>&1
check "--eval_users: another seed, other users" "[ \"\$(tail -n +2 $tmp/nn_s1.tsv | cut -f1)\" != \"\$(tail -n +2 $tmp/nn_s3.tsv | cut -f1)\" ]"
"$bin" $nn --test_all 1 --eval_users 100000 --per_user_metrics "$tmp/nn_s4.tsv" > "$tmp/nn4.out" 2>&1
check "--eval_users above the users: every instance, the same metrics ($n_nn rows)" "cmp -s $tmp/nn_all.tsv $tmp/nn_s4.tsv && [ \"\$(grep '^Test After' $tmp/nn2.out)\" = \"\$(grep '^Test After' $tmp/nn4.out)\" ]"
"$bin" $nn --eval_users 5 > "$tmp/nn5.out" 2>&1; rc=$?
check "--eval_users without --test_all 1: refused (exit 2)" "[ $rc -eq 2 ] && grep -q -- '--eval_users: .*--test_all 1' $tmp/nn5.out"
"$bin" --model_name TiMiRec --help > "$tmp/mh" 2>&1
check "--help lists --eval_users" "grep -q -- '--eval_users' $tmp/mh"

"$bin" recommend --model_path "$pre" --dataset toy --path "$tmp/data" --stage finetune --out "$tmp/x.tsv" > "$tmp/e1" 2>&1; rc=$?
check "--stage finetune on a pretrain checkpoint is refused" "[ $rc -eq 1 ] && grep -q 'pretrain checkpoint' $tmp/e1"
"$bin" recommend --model_path "$pre" --dataset toy --path "$tmp/data" --retrieval clusters > "$tmp/e2" 2>&1; rc=$?
check "bad --retrieval named" "[ $rc -eq 2 ] && grep -q -- '--retrieval' $tmp/e2"
"$bin" recommend --help > "$tmp/help" 2>&1
check "--help documents --retrieval and the TSV" "grep -q 'retrieval' $tmp/help && grep -q 'rec_items' $tmp/help"
exit $fail
