#!/bin/sh
# The prepare and synth subcommands through the real binary ($1): the ml-100k reproduction
# (train.csv byte for byte, user/item/time of dev and test; needs ../shared/data, else SKIP
# after the other checks), exit codes 0/1/2, and a toy synth dataset.
bin=${1:-bin/timirec}
tmp=$(mktemp -d /tmp/timirec_cli_prepare.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # check WANT_RC DESCRIPTION CMD...
    want=$1; what=$2; shift 2
    "$@" >"$tmp/out" 2>&1; rc=$?
    if [ "$rc" -ne "$want" ]; then echo "FAIL $what: exit $rc, want $want"; sed 's/^/  | /' "$tmp/out"; fail=1; fi
}
check 0 "prepare --help" "$bin" prepare --help
grep -q -- "--neg_items" "$tmp/out" || { echo "FAIL prepare --help lists --neg_items"; fail=1; }
check 0 "synth --help" "$bin" synth --help
check 2 "prepare unknown flag" "$bin" prepare --format udata a b --nope
check 2 "prepare missing OUTDIR" "$bin" prepare --format udata a
check 1 "prepare missing input" "$bin" prepare --format udata "$tmp/none" "$tmp/o"
printf '1 2 3\n' >"$tmp/seq.txt"; printf '1 2 x\n' >"$tmp/bad.txt"
check 1 "prepare bad input" "$bin" prepare --format seq "$tmp/bad.txt" "$tmp/o"
grep -qF "$tmp/bad.txt:1: " "$tmp/out" || { echo "FAIL bad input message names file and line"; cat "$tmp/out"; fail=1; }
check 0 "synth toy" "$bin" synth --out "$tmp" --dataset toy --users 300 --items 100 --negatives 20
for f in train dev test item_clusters; do [ -s "$tmp/toy/$f.csv" ] || { echo "FAIL synth wrote $f.csv"; fail=1; }; done

raw=../shared/data/raw/ml-100k/u.data ref=../shared/data/ml-100k
if [ -r "$raw" ] && [ -r "$ref/train.csv" ]; then
    check 0 "prepare ml-100k" "$bin" prepare --format udata "$raw" "$tmp/ml"
    cat "$tmp/out"
    cmp -s "$tmp/ml/train.csv" "$ref/train.csv" || { echo "FAIL ml-100k train.csv differs"; fail=1; }
    for f in dev test; do
        cut -f1-3 "$tmp/ml/$f.csv" >"$tmp/a"; cut -f1-3 "$ref/$f.csv" >"$tmp/b"
        cmp -s "$tmp/a" "$tmp/b" || { echo "FAIL ml-100k $f.csv user/item/time differ"; fail=1; }
    done
    [ $fail -eq 0 ] && echo "cli_prepare: ok (ml-100k reproduced)"
    exit $fail
fi
[ $fail -ne 0 ] && exit 1
echo "SKIP: ml-100k reproduction needs ../shared/data (absent); other CLI checks ok"
exit 77
