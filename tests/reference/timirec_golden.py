"""PyTorch model of TiMiRec written from the model's specification (docs/MODEL.md, "Parameters"
to "Distillation loss"), used to make the golden
files that tests/test_golden.c compares the C reference backend against.

For each stage it builds the model with the reference's parameter names, sets random initial
weights, runs three Adam steps on fixed random training batches and evaluates one batch, and
writes one safetensors file with everything the C side needs (inputs and outputs):

  config (metadata), init/<param>, step{s}/{hist,length,cand} (I32), step{s}/loss,
  step{s}/scores, step{s}/V, step{s}/pred_intent, step{s}/target_intent (finetune),
  step{s}/grad/<param>, step{s}/param/<param> (after the Adam step),
  eval/{hist,length,cand,scores}.
and golden_<stage>_model.safetensors: the trained state_dict alone, as PyTorch exports it.

Dropout masks are not exchanged: this script reproduces the C side's Philox4x32-10 stream
(include/timirec/rng.h, RNG_DROPOUT) bit for bit, so a mismatch shows up as a test failure.

usage: /usr/bin/python3 tests/reference/timirec_golden.py OUTDIR   (Debian's python3-torch)
"""
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)

# ---- Philox4x32-10, as include/timirec/rng.h maps it ---------------------------------------
M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF
RNG_DROPOUT = 3


def philox4x32_10(ctr, k0, k1):
    c = list(ctr)
    for r in range(10):
        if r > 0:
            k0 = (k0 + W0) & MASK32
            k1 = (k1 + W1) & MASK32
        p0 = M0 * c[0]
        p1 = M1 * c[2]
        hi0, lo0 = p0 >> 32, p0 & MASK32
        hi1, lo1 = p1 >> 32, p1 & MASK32
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
    return c


def rng_u32(seed, purpose, epoch, index, draw):
    ctr = [index & MASK32, (index >> 32) & MASK32, epoch & MASK32, (purpose & 0xFF) | ((draw >> 2) << 8)]
    return philox4x32_10(ctr, seed & MASK32, (seed >> 32) & MASK32)[draw & 3]


def uniform01(word):
    return float(word >> 8) * (1.0 / 16777216.0)


assert philox4x32_10([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], 0xA4093822, 0x299F31D0) == \
    [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1], "Philox known answer"


def dropout_mask(seed, step, layer, B, d, p):
    """keep iff uniform01(rng_u32(seed, RNG_DROPOUT, step, ((layer*B)+b)*d + j, 0)) >= p."""
    m = np.zeros((B, d), dtype=np.float32)
    for b in range(B):
        for j in range(d):
            u = uniform01(rng_u32(seed, RNG_DROPOUT, step, (layer * B + b) * d + j, 0))
            m[b, j] = 1.0 if u >= p else 0.0
    return torch.from_numpy(m)


# ---- the model, from docs/MODEL.md ----------------------------------------------------------------
class Attention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.q_linear = nn.Linear(d, d)
        self.k_linear = nn.Linear(d, d)
        self.v_linear = nn.Linear(d, d)


class Transformer(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.masked_attn_head = Attention(d)
        self.layer_norm1 = nn.LayerNorm(d)
        self.linear1 = nn.Linear(d, d)
        self.linear2 = nn.Linear(d, d)
        self.layer_norm2 = nn.LayerNorm(d)

    def forward(self, x, mask):  # x (B, L, d), mask (B, L) bool
        a = self.masked_attn_head
        q, k, v = a.q_linear(x), a.k_linear(x), a.v_linear(x)
        s = q @ k.transpose(1, 2) / math.sqrt(x.shape[-1])
        s = s.masked_fill(~mask[:, None, :], float('-inf'))
        att = torch.softmax(s, dim=-1)
        att = torch.nan_to_num(att, nan=0.0)  # a row with no valid key gives 0s
        h1 = self.layer_norm1(att @ v + x)
        f = self.linear2(torch.relu(self.linear1(h1)))
        return self.layer_norm2(f + h1)


class Extractor(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        N, d, a, K = cfg['n_items'], cfg['emb_size'], cfg['attn_size'], cfg['K']
        self.cfg = cfg
        self.i_embeddings = nn.Embedding(N, d)
        if cfg['add_pos']:
            self.p_embeddings = nn.Embedding(cfg['history_max'] + 1, d)
        self.W1 = nn.Linear(d, a)
        self.W2 = nn.Linear(a, K)
        if cfg['add_trm']:
            self.transformer = Transformer(d)

    def forward(self, hist, length):
        mask = hist > 0
        L = hist.shape[1]
        x = self.i_embeddings(hist)
        if self.cfg['add_pos']:
            pos = (length[:, None] - torch.arange(L)[None, :]) * mask.long()
            x = x + self.p_embeddings(pos)
        if self.cfg['add_trm']:
            x = self.transformer(x, mask) * mask[:, :, None].float()
        e = self.W2(torch.tanh(self.W1(x)))  # (B, L, K)
        e = e.masked_fill(~mask[:, :, None], float('-inf')).transpose(1, 2)
        alpha = torch.nan_to_num(torch.softmax(e, dim=-1), nan=0.0)  # (B, K, L)
        return alpha @ x  # (B, K, d)


class Predictor(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg['emb_size']
        self.i_embeddings = nn.Embedding(cfg['n_items'] + 1, d)
        self.rnn = nn.GRU(input_size=d, hidden_size=d, batch_first=True)

    def forward(self, hist, length):
        x = self.i_embeddings(hist)
        packed = nn.utils.rnn.pack_padded_sequence(x, length, batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)
        return h[-1]


class TiMiRec(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.interest_extractor = Extractor(cfg)
        if cfg['stage'] == 'finetune':
            d, K = cfg['emb_size'], cfg['K']
            self.interest_predictor = Predictor(cfg)
            self.proj = nn.Module()
            for i in range(cfg['n_layers'] - 1):
                setattr(self.proj, 'proj_%d' % i, nn.Linear(d, d))
            self.proj.proj_final = nn.Linear(d, K)

    def project(self, g, training, step):
        c = self.cfg
        for i in range(c['n_layers'] - 1):
            g = getattr(self.proj, 'proj_%d' % i)(g)
            if training:
                g = g * dropout_mask(c['seed'], step, i, g.shape[0], g.shape[1], c['dropout']) / (1 - c['dropout'])
            g = torch.relu(g)
        return self.proj.proj_final(g)

    def forward(self, hist, length, cand, training, step):
        out = {}
        V = self.interest_extractor(hist, length)  # (B, K, d)
        E = self.interest_extractor.i_embeddings(cand)  # (B, C, d)
        out['V'] = V
        if self.cfg['stage'] == 'pretrain':
            if training:
                k = (V * E[:, :1, :]).sum(-1).argmax(-1)  # first max
                u = V[torch.arange(V.shape[0]), k]
                out['scores'] = (u[:, None, :] * E).sum(-1)
            else:
                out['scores'] = (V[:, None, :, :] * E[:, :, None, :]).sum(-1).max(-1)[0]
            return out
        g = self.interest_predictor(hist, length)
        pred = self.project(g, training, step)
        out['pred_intent'] = pred
        if training:
            t = E[:, 0]
            out['target_intent'] = (F.normalize(V, dim=-1, eps=1e-12) *
                                    F.normalize(t, dim=-1, eps=1e-12)[:, None, :]).sum(-1)
        u = (V * torch.softmax(pred, dim=-1)[:, :, None]).sum(1)
        out['scores'] = (u[:, None, :] * E).sum(-1)
        return out

    def loss(self, out):
        s = out['scores']
        pos, neg = s[:, 0], s[:, 1:]
        w = torch.softmax(neg, dim=1)
        loss = -((torch.sigmoid(pos[:, None] - neg) * w).sum(1)).log().mean()
        if self.cfg['stage'] == 'finetune':
            T = self.cfg['temp']
            kl = F.kl_div(F.log_softmax(out['pred_intent'] / T, dim=1),
                          F.softmax(out['target_intent'].detach() / T, dim=1), reduction='batchmean')
            loss = loss + T * T * kl
        return loss


# ---- data ------------------------------------------------------------------------------------
def random_batch(rs, B, L, N, C):
    length = rs.randint(1, L + 1, size=B)
    length[0], length[-1] = 1, L  # both extremes
    hist = np.zeros((B, L), dtype=np.int64)
    for b in range(B):
        hist[b, :length[b]] = rs.randint(1, N, size=length[b])
    cand = rs.randint(1, N, size=(B, C))
    return torch.from_numpy(hist), torch.from_numpy(length.astype(np.int64)), torch.from_numpy(cand)


def init_weights(model, rs):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'layer_norm' in name and name.endswith('weight'):
                p.copy_(torch.from_numpy(1.0 + 0.1 * rs.randn(*p.shape).astype(np.float32)))
            else:
                p.copy_(torch.from_numpy(0.3 * rs.randn(*p.shape).astype(np.float32)))


def write_safetensors(path, tensors, meta):
    header, blobs, off = {'__metadata__': meta}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        dtype = {np.dtype('float32'): 'F32', np.dtype('int32'): 'I32'}[arr.dtype]
        b = arr.tobytes()
        header[name] = {'dtype': dtype, 'shape': list(arr.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def make(stage, outdir):
    cfg = dict(stage=stage, n_items=31, emb_size=8, attn_size=4, K=3, history_max=6, add_pos=1,
               add_trm=1, n_layers=3 if stage == 'finetune' else 1, temp=0.5, dropout=0.5,
               lr=1e-2, l2=1e-2, seed=12345, B=6, num_neg=2, eval_C=9)
    rs = np.random.RandomState(0 if stage == 'pretrain' else 1)
    model = TiMiRec(cfg)
    init_weights(model, rs)
    names = [n for n, _ in model.named_parameters()]
    t = {}
    for n, p in model.named_parameters():
        t['init/' + n] = p.detach().numpy().copy()
    decay = [p for n, p in model.named_parameters() if 'bias' not in n]
    no_decay = [p for n, p in model.named_parameters() if 'bias' in n]
    opt = torch.optim.Adam([{'params': decay}, {'params': no_decay, 'weight_decay': 0}],
                           lr=cfg['lr'], weight_decay=cfg['l2'])
    L, B, N = cfg['history_max'], cfg['B'], cfg['n_items']
    for s in range(3):
        hist, length, cand = random_batch(rs, B, L, N, 1 + cfg['num_neg'])
        opt.zero_grad()
        out = model(hist, length, cand, True, s)
        loss = model.loss(out)
        loss.backward()
        pre = 'step%d/' % s
        t[pre + 'hist'] = hist.numpy().astype(np.int32)
        t[pre + 'length'] = length.numpy().astype(np.int32)
        t[pre + 'cand'] = cand.numpy().astype(np.int32)
        t[pre + 'loss'] = np.array([loss.item()], dtype=np.float32)
        for k in ('scores', 'V', 'pred_intent', 'target_intent'):
            if k in out:
                t[pre + k] = out[k].detach().numpy()
        for n, p in model.named_parameters():
            t[pre + 'grad/' + n] = p.grad.detach().numpy().copy()
        opt.step()
        for n, p in model.named_parameters():
            t[pre + 'param/' + n] = p.detach().numpy().copy()
    hist, length, cand = random_batch(rs, B, L, N, cfg['eval_C'])
    with torch.no_grad():
        out = model(hist, length, cand, False, 0)
    t['eval/hist'] = hist.numpy().astype(np.int32)
    t['eval/length'] = length.numpy().astype(np.int32)
    t['eval/cand'] = cand.numpy().astype(np.int32)
    t['eval/scores'] = out['scores'].numpy()
    # The trained model alone, as a PyTorch user would export it (reference key names):
    # test_golden.c loads it with checkpoint_load and must reproduce eval/scores.
    write_safetensors('%s/golden_%s_model.safetensors' % (outdir, stage),
                      {n: p.detach().numpy() for n, p in model.named_parameters()},
                      {'format': 'pt'})
    meta = {k: str(v) for k, v in cfg.items()}
    meta['params'] = ','.join(names)
    meta['torch'] = torch.__version__
    path = '%s/golden_%s.safetensors' % (outdir, stage)
    write_safetensors(path, t, meta)
    print('wrote %s: %d tensors, losses %s' % (path, len(t), [float(t['step%d/loss' % s][0]) for s in range(3)]))


if __name__ == '__main__':
    outdir = sys.argv[1] if len(sys.argv) > 1 else 'tests/reference'
    make('pretrain', outdir)
    make('finetune', outdir)
