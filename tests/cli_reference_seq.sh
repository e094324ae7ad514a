#!/bin/sh
# Our sequences/positions/histories against the reference pipeline restated in pandas
# (tests/reference/seq_reference.py) on ml-100k and on a random tie-heavy dataset.
# SKIP when pandas or ../shared/data is missing.
bin=${1:-bin/timirec}
python3 -c "import pandas" 2>/dev/null || { echo "SKIP: python3 pandas not installed"; exit 77; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # path dataset history_max
    "$bin" data --path "$1" --dataset "$2" --history_max "$3" --dump "$tmp/ours.txt" >/dev/null || { echo "FAIL: timirec data on $2"; fail=1; return; }
    python3 tests/reference/seq_reference.py "$1" "$2" "$3" > "$tmp/ref.txt" || { echo "FAIL: reference script on $2"; fail=1; return; }
    if cmp -s "$tmp/ours.txt" "$tmp/ref.txt"; then
        echo "ok: $2 history_max $3: $(wc -l < "$tmp/ref.txt") instances identical"
    else
        echo "FAIL: $2 history_max $3 differs from the reference pipeline"; diff "$tmp/ours.txt" "$tmp/ref.txt" | head -5; fail=1
    fi
}
python3 - "$tmp" <<'PY'
import random, os, sys
random.seed(3)
d = os.path.join(sys.argv[1], 'rnd'); os.makedirs(d)
seen = set()
def rows(n):
    out = []
    while len(out) < n:
        r = (random.randint(1, 50), random.randint(1, 80), random.randint(0, 30))  # many time ties
        if r not in seen:
            seen.add(r); out.append(r)
    return out
for name, n in [('train', 1500), ('dev', 60), ('test', 60)]:
    with open(os.path.join(d, name + '.csv'), 'w') as f:
        f.write('user_id\titem_id\ttime' + ('' if name == 'train' else '\tneg_items') + '\n')
        for u, i, t in rows(n):
            f.write(f'{u}\t{i}\t{t}' + ('' if name == 'train' else '\t[1, 2]') + '\n')
PY
check "$tmp" rnd 5
check "$tmp" rnd 0
if [ -f ../shared/data/ml-100k/train.csv ]; then check ../shared/data ml-100k 20; else echo "(ml-100k absent: checked the random dataset only)"; fi
exit $fail
