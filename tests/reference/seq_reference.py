"""The reference's data pipeline (ReChorus SeqReader + SequentialModel.Dataset), restated with
pandas, printing every instance as `phase user item position length: history...` -- the format
of `timirec data --dump FILE`. Used by tests/cli_reference_seq.sh when pandas is installed.

usage: python3 seq_reference.py PATH DATASET HISTORY_MAX
"""
import pandas as pd, numpy as np, sys
prefix, ds, hmax = sys.argv[1], sys.argv[2], int(sys.argv[3])
dfs = {k: pd.read_csv(f"{prefix}/{ds}/{k}.csv", sep='\t') for k in ['train','dev','test']}
all_df = pd.concat([dfs[k][['user_id','item_id','time']] for k in ['train','dev','test']])
sort_df = all_df.sort_values(by=['time','user_id'], kind='mergesort')
position, user_his = [], {}
for uid, iid, t in zip(sort_df['user_id'], sort_df['item_id'], sort_df['time']):
    user_his.setdefault(uid, [])
    position.append(len(user_his[uid])); user_his[uid].append(iid)
sort_df['position'] = position
out = []
for p, k in enumerate(['train','dev','test']):
    d = pd.merge(left=dfs[k], right=sort_df, how='left', on=['user_id','item_id','time'])
    d = d[d['position'] > 0]
    for u, i, pos in zip(d['user_id'], d['item_id'], d['position']):
        h = user_his[u][:pos]
        h = h[-hmax:] if hmax > 0 else h
        out.append(f"{p} {u} {i} {pos} {len(h)}:" + ''.join(f" {x}" for x in h))
print('\n'.join(out))
