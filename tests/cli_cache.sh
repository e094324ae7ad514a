#!/bin/sh
# The dataset cache from the command line (docs/MODEL.md, "The dataset cache"): the first
# `timirec data` writes <dataset>/timirec_corpus.bin and says so, the next reads it, --cache 0
# parses, --regenerate 1 rebuilds, a changed CSV or a corrupt cache is rebuilt, four processes
# started together on a fresh copy build it once and print the same statistics, a read-only
# folder gets none, and a training run logs which it used.
bin=${1:-bin/timirec}
tmp=$(mktemp -d) || exit 1
trap 'chmod -R u+w "$tmp"; rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
data() { "$bin" data --path "$tmp/data" --dataset toy --batch_size 64 "$@" 2>&1; }

"$bin" synth --out "$tmp/data" --dataset toy --users 200 --items 80 --n_clusters 6 --seq_len 15 --negatives 20 >/dev/null || { echo "FAIL: synth"; exit 1; }
cache=$tmp/data/toy/timirec_corpus.bin

data > "$tmp/1.out"
check "first load writes the cache" "grep -q '^Dataset cache: wrote .*timirec_corpus.bin' $tmp/1.out && [ -s $cache ]"
data > "$tmp/2.out"
check "second load reads it" "grep -q '^Dataset cache: read ' $tmp/2.out"
check "same statistics and metrics either way" "[ \"\$(grep -v -e '^Reading' -e '^Dataset cache' -e 'One training epoch' -e '^POP' $tmp/1.out)\" = \"\$(grep -v -e '^Reading' -e '^Dataset cache' -e 'One training epoch' -e '^POP' $tmp/2.out)\" ] && [ \"\$(grep '^POP' $tmp/1.out | sed 's/ \[.*//')\" = \"\$(grep '^POP' $tmp/2.out | sed 's/ \[.*//')\" ]"
data --cache 0 > "$tmp/3.out"
check "--cache 0 parses" "grep -q '^Dataset cache: off (--cache 0)' $tmp/3.out"
data --regenerate 1 > "$tmp/4.out"
check "--regenerate 1 rebuilds" "grep -q '^Dataset cache: wrote .*(rebuilt: --regenerate 1)' $tmp/4.out"
printf '1\t3\t999999\n' >> "$tmp/data/toy/train.csv"
data > "$tmp/5.out"
check "an appended row rebuilds it" "grep -q 'rebuilt: train.csv changed' $tmp/5.out && grep -q '\"# entry\": 3001' $tmp/5.out"
printf 'garbage' | dd of="$cache" bs=1 seek=2000 conv=notrunc 2>/dev/null
data > "$tmp/6.out"
check "a corrupt cache is rebuilt" "grep -q 'rebuilt: checksum mismatch' $tmp/6.out"

# Four loaders at once on a fresh copy: one writes, the others wait and read.
cp -r "$tmp/data/toy" "$tmp/data/fresh"
rm -f "$tmp/data/fresh/timirec_corpus.bin" "$tmp/data/fresh/timirec_corpus.lock"
for k in 1 2 3 4; do
    "$bin" data --path "$tmp/data" --dataset fresh --batch_size 64 > "$tmp/c$k.out" 2>&1 &
done
wait
check "four concurrent loaders: one wrote" "[ \$(cat $tmp/c?.out | grep -c '^Dataset cache: wrote') -eq 1 ] && [ \$(cat $tmp/c?.out | grep -c '^Dataset cache: read') -eq 3 ]"
check "four concurrent loaders: the same statistics" "[ \$(for k in 1 2 3 4; do grep -e '# user' -e ' rows, ' $tmp/c\$k.out | md5sum; done | sort -u | wc -l) -eq 1 ]"
check "no temporary file left" "[ ! -e $tmp/data/fresh/timirec_corpus.bin.tmp ]"

# A read-only folder: parsed, nothing written, one line.
cp -r "$tmp/data/toy" "$tmp/data/ro"
rm -f "$tmp/data/ro/timirec_corpus.bin" "$tmp/data/ro/timirec_corpus.lock"
chmod a-w "$tmp/data/ro"
"$bin" data --path "$tmp/data" --dataset ro --batch_size 64 > "$tmp/ro.out" 2>&1
check "read-only folder: no cache, one line" "grep -q '^Dataset cache: none (the folder .* is read-only); parsed the CSVs' $tmp/ro.out && [ ! -e $tmp/data/ro/timirec_corpus.bin ]"

# A training run logs which it used.
"$bin" --model_name TiMiRec --path "$tmp/data" --dataset toy --stage pretrain --epoch 1 --emb_size 8 --batch_size 256 --threads 1 --model_dir "$tmp/model/" --log_dir "$tmp/log/" > "$tmp/run.out" 2>&1
check "a run logs the cache it read" "grep -q 'Dataset cache: read ' $tmp/run.out"
exit $fail
