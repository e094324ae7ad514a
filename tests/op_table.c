/* The op table (tests/op_table.h says what an entry holds and how the harness uses it).
 * Each entry: an enum of its tensors (the order of c->t), their op_tensor_t list, the CPU call
 * written once for both precisions (CPU_WRAP: buffers are void *, so one argument list serves
 * the _f and _d functions), the GPU call, and the op_t line at the end of the file.
 * Entries that drop an optional tensor (no bias, no positions, no row mask) list the same
 * tensors with the optional ones last, and count fewer. */
#include "op_table.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "timirec/cpu_ops.h"
#include "timirec/rng.h"

#define NT(list) ((int)(sizeof(list) / sizeof *(list)))

/* The shapes a mode runs, out of the five lists a shape generator declares (grad, gpu, emu,
 * perf, smoke: op_mode_t's order), copied into o; returns how many. */
static int pick_shapes(op_mode_t mode, op_shape_t *o, const op_shape_t *const lists[5],
                       const int counts[5]) {
    for (int i = 0; i < counts[mode]; i++) o[i] = lists[mode][i];
    return counts[mode];
}
#define PICK_SHAPES(mode, o)                                                               \
    pick_shapes((mode), (o), (const op_shape_t *const[5]){grad, gpu, emu, perf, smoke},    \
                (const int[5]){NT(grad), NT(gpu), NT(emu), NT(perf), NT(smoke)})

/* Both precisions of one CPU call: CALL(P) pastes P (_f or _d) onto the function names and
 * may use t (the buffers), s (the shape) and n (= B L rows). */
#define CPU_WRAP(name, CALL)                                                                 \
    static void name##_f(op_case_t *c) {                                                     \
        void *const *t = c->t;                                                               \
        const op_shape_t *s = &c->s;                                                         \
        const int64_t n = (int64_t)s->B * s->L;                                              \
        (void)t, (void)s, (void)n;                                                           \
        CALL(_f);                                                                            \
    }                                                                                        \
    static void name##_d(op_case_t *c) {                                                     \
        void *const *t = c->t;                                                               \
        const op_shape_t *s = &c->s;                                                         \
        const int64_t n = (int64_t)s->B * s->L;                                              \
        (void)t, (void)s, (void)n;                                                           \
        CALL(_d);                                                                            \
    }

/* The GPU call; NULL in a build without CUDA (parity and GPU perf then SKIP). */
#ifdef TIMIREC_CUDA
#define GPU_WRAP(name, CALL)                                                                 \
    static void name##_gpu(gpu_ctx_t *g, op_case_t *c) {                                     \
        void *const *t = c->t;                                                               \
        const op_shape_t *s = &c->s;                                                         \
        const int64_t n = (int64_t)s->B * s->L;                                              \
        (void)t, (void)s, (void)n;                                                           \
        CALL;                                                                                \
    }
#define GPU(name) name##_gpu
#else
#define GPU_WRAP(name, CALL)
#define GPU(name) NULL
#endif

/* ---- shapes --------------------------------------------------------------------------------- */

/* The extractor's sub-ops: {B, L, d, a, K, C, N, f}. Grad: small (finite differences over
 * every element), one of them with odd sizes. Parity on a GPU: one history item to 512, emb 16
 * to 256, K 1 to 64, batch 1 to 256; in the emulation: smaller, but L past two key tiles and
 * not a multiple of 32, the widest rows, K past one interest per lane. Perf: the reference's
 * shape (batch 256, history 20, emb 64, attn 8, K 2), long histories, K 64, batch 8,192. Every batch has
 * histories of random length, the last row of a batch of 3 or more empty. */
static int ext_shapes(op_mode_t mode, op_shape_t *o) {
#define EXT(b_, l_, d_, a_, k_, n_, f_)                                                         \
    {.B = b_, .L = l_, .d = d_, .a = a_, .K = k_, .N = n_, .f = f_}
    static const op_shape_t grad[] = {
        EXT(4, 5, 8, 4, 3, 9, 12),
        EXT(3, 7, 5, 3, 2, 11, 6),
    };
    static const op_shape_t gpu[] = {
        EXT(1, 1, 16, 8, 1, 60, 16),      /* the smallest: one item, one interest */
        EXT(3, 20, 64, 8, 2, 60, 64),     /* the reference's per-row shape, small batch */
        EXT(256, 20, 64, 8, 2, 60, 64),   /* the reference's batch */
        EXT(3, 200, 256, 32, 7, 60, 256),
        EXT(3, 512, 64, 16, 64, 60, 64),  /* longest history, most interests */
        EXT(1, 512, 256, 64, 64, 60, 256),
        EXT(256, 200, 16, 8, 7, 60, 16),
    };
    static const op_shape_t emu[] = {
        EXT(1, 1, 16, 8, 1, 60, 16),
        EXT(3, 20, 16, 8, 7, 60, 16),
        EXT(5, 13, 64, 8, 2, 60, 64),
        EXT(32, 20, 64, 8, 2, 60, 64),
        EXT(3, 70, 32, 16, 64, 60, 32),   /* L past two key tiles, not a multiple of 32 */
        EXT(3, 45, 256, 40, 3, 60, 256),  /* the widest rows */
        EXT(3, 200, 32, 8, 16, 60, 32),   /* L 200 */
        EXT(3, 512, 16, 8, 33, 60, 16),   /* the longest history; K past one interest per lane */
    };
    static const op_shape_t perf[] = {
        EXT(256, 20, 64, 8, 2, 3707, 64),   /* the reference's shape */
        EXT(256, 200, 64, 8, 16, 3707, 64), /* long histories, K 16 */
        EXT(32, 512, 64, 8, 2, 3707, 64),   /* the longest history */
        EXT(256, 50, 64, 8, 64, 3707, 64),  /* K 64 */
        EXT(8192, 20, 64, 8, 2, 3707, 64),  /* batch 8,192 */
    };
    static const op_shape_t smoke[] = {EXT(8, 20, 64, 8, 2, 3707, 64)};
#undef EXT
    return PICK_SHAPES(mode, o);
}

/* Linear at the extractor's two sizes: d -> a (the interest attention's W1) and a -> K (W2);
 * in = d, out = a of the shape. */
static int linear_shapes(op_mode_t mode, op_shape_t *o) {
    op_shape_t e[OP_MAX_SHAPES];
    const int k = ext_shapes(mode, e);
    int m = 0;
    for (int i = 0; i < k && m + 2 <= OP_MAX_SHAPES; i++) {
        o[m] = e[i];
        o[m + 1] = e[i];
        o[m + 1].d = e[i].a, o[m + 1].a = e[i].K;
        m += 2;
    }
    return m;
}

/* ---- embedding gather + position, and its scatter-add backward ------------------------------ */

enum { EM_E, EM_HIST, EM_POS, EM_X0, EM_DX0, EM_DE, EM_P, EM_DP };
static const op_tensor_t embed_t[] = {
    [EM_E] = {"E", "N,d", T_IN, -1, 1, .grad = "dE"},
    [EM_HIST] = {"hist", "B,L", T_IDS, .fill = F_HIST},
    [EM_POS] = {"pos", "B,L", T_IDS, .fill = F_POS},
    [EM_X0] = {"x0", "n,d", T_OUT, .grad = "dx0", .flags = OPT_EXACT},
    [EM_DX0] = {"dx0", "n,d", T_IN, -1, 1, .flags = 0},
    [EM_DE] = {"dE", "N,d", T_GRAD_ADD, -1, 1, .ids = "hist"},
    [EM_P] = {"P", "P,d", T_IN, -1, 1, .grad = "dP"},
    [EM_DP] = {"dP", "P,d", T_GRAD_ADD, -1, 1, .ids = "pos"},
};
#define EMBED_FWD(P) layer_embed_forward##P(t[EM_E], t[EM_P], t[EM_HIST], t[EM_POS], n, s->d, t[EM_X0])
#define EMBED_BWD(P) layer_embed_backward##P(t[EM_HIST], t[EM_POS], n, s->d, t[EM_DX0], t[EM_DE], t[EM_DP])
#define ITEMS_FWD(P) layer_embed_forward##P(t[EM_E], NULL, t[EM_HIST], t[EM_POS], n, s->d, t[EM_X0])
#define ITEMS_BWD(P) layer_embed_backward##P(t[EM_HIST], t[EM_POS], n, s->d, t[EM_DX0], t[EM_DE], NULL)
CPU_WRAP(embed_fwd, EMBED_FWD)
CPU_WRAP(embed_bwd, EMBED_BWD)
CPU_WRAP(items_fwd, ITEMS_FWD)
CPU_WRAP(items_bwd, ITEMS_BWD)
GPU_WRAP(embed_fwd, gpu_layer_embed_forward(g, t[EM_E], t[EM_P], t[EM_HIST], t[EM_POS], n, s->d, t[EM_X0]))
GPU_WRAP(embed_bwd, gpu_layer_embed_backward(g, t[EM_HIST], t[EM_POS], n, s->d, t[EM_DX0], t[EM_DE], t[EM_DP]))
GPU_WRAP(items_fwd, gpu_layer_embed_forward(g, t[EM_E], NULL, t[EM_HIST], t[EM_POS], n, s->d, t[EM_X0]))
GPU_WRAP(items_bwd, gpu_layer_embed_backward(g, t[EM_HIST], t[EM_POS], n, s->d, t[EM_DX0], t[EM_DE], NULL))

/* Gather: ids, the gathered rows and the output; scatter: ids, dx0, and each touched table
 * row read and written (at most min(n, rows) of them). */
static double embed_cost_(const op_shape_t *s, int bwd, double *flops, int with_p) {
    const double n = (double)s->B * s->L, d = s->d, P = with_p;
    *flops = bwd ? (1 + P) * n * d : P * n * d;
    if (!bwd) return 4 * ((1 + P) * n + (2 + P) * n * d);
    const double items = fmin(n, s->N), pos = fmin(n, s->L + 1);
    return 4 * ((1 + P) * n + n * d + 2 * (items + P * pos) * d);
}
static double embed_cost(const op_shape_t *s, int bwd, double *flops) {
    return embed_cost_(s, bwd, flops, 1);
}
static double items_cost(const op_shape_t *s, int bwd, double *flops) {
    return embed_cost_(s, bwd, flops, 0);
}

/* ---- Linear (PyTorch layout W [out, in]; in = d, out = a of the shape) ---------------------- */

enum { LI_X, LI_W, LI_Y, LI_DY, LI_DX, LI_DW, LI_B, LI_DB };
static const op_tensor_t linear_t[] = {
    [LI_X] = {"x", "n,d", T_IN, -1, 1, .grad = "dx"},
    [LI_W] = {"W", "a,d", T_IN, -1, 1, .grad = "dW", .flags = OPT_FANIN},
    [LI_Y] = {"y", "n,a", T_OUT, .grad = "dy"},
    [LI_DY] = {"dy", "n,a", T_IN, -1, 1, .flags = 0},
    [LI_DX] = {"dx", "n,d", T_GRAD_ADD, -1, 1, .flags = 0},
    [LI_DW] = {"dW", "a,d", T_GRAD_ADD, -1, 1, .flags = OPT_ROWS},
    [LI_B] = {"b", "a", T_IN, -1, 1, .grad = "db"},
    [LI_DB] = {"db", "a", T_GRAD_ADD, -1, 1, .flags = OPT_ROWS},
};
#define LIN_FWD(P) layer_linear_forward##P(t[LI_X], t[LI_W], t[LI_B], n, s->d, s->a, t[LI_Y])
#define LIN_BWD(P) layer_linear_backward##P(t[LI_X], t[LI_W], t[LI_DY], n, s->d, s->a, t[LI_DX], t[LI_DW], t[LI_DB])
#define LINNB_FWD(P) layer_linear_forward##P(t[LI_X], t[LI_W], NULL, n, s->d, s->a, t[LI_Y])
#define LINNB_BWD(P) layer_linear_backward##P(t[LI_X], t[LI_W], t[LI_DY], n, s->d, s->a, t[LI_DX], t[LI_DW], NULL)
CPU_WRAP(linear_fwd, LIN_FWD)
CPU_WRAP(linear_bwd, LIN_BWD)
CPU_WRAP(linnb_fwd, LINNB_FWD)
CPU_WRAP(linnb_bwd, LINNB_BWD)
GPU_WRAP(linear_fwd, gpu_layer_linear_forward(g, t[LI_X], t[LI_W], t[LI_B], n, s->d, s->a, t[LI_Y]))
GPU_WRAP(linear_bwd, gpu_layer_linear_backward(g, t[LI_X], t[LI_W], t[LI_DY], n, s->d, s->a, t[LI_DX], t[LI_DW], t[LI_DB]))
GPU_WRAP(linnb_fwd, gpu_layer_linear_forward(g, t[LI_X], t[LI_W], NULL, n, s->d, s->a, t[LI_Y]))
GPU_WRAP(linnb_bwd, gpu_layer_linear_backward(g, t[LI_X], t[LI_W], t[LI_DY], n, s->d, s->a, t[LI_DX], t[LI_DW], NULL))

static double linear_cost(const op_shape_t *s, int bwd, double *flops) {
    const double n = (double)s->B * s->L, in = s->d, out = s->a;
    *flops = (bwd ? 4 : 2) * n * in * out;
    return 4 * (bwd ? n * out + 3 * n * in + 3 * in * out + 2 * out
                    : n * in + in * out + out + n * out);
}

/* ---- masked single-head attention (the GPU keeps per-row stats instead of the weights) ------ */

enum { AT_Q, AT_K, AT_V, AT_HIST, AT_ATT, AT_STATS, AT_CTX, AT_DCTX, AT_DQ, AT_DK, AT_DV, AT_DS,
       AT_D };
static const op_tensor_t attn_t[] = {
    [AT_Q] = {"q", "B,L,d", T_IN, -1, 1, .grad = "dq"},
    [AT_K] = {"k", "B,L,d", T_IN, -1, 1, .grad = "dk"},
    [AT_V] = {"v", "B,L,d", T_IN, -1, 1, .grad = "dv"},
    [AT_HIST] = {"hist", "B,L", T_IDS, .fill = F_HIST},
    [AT_ATT] = {"att", "B,L,L", T_SCRATCH, .flags = 0},    /* CPU: the weights (checked through derive) */
    [AT_STATS] = {"stats", "n,2", T_SCRATCH, .flags = 0},  /* GPU: per query row (max, 1 / sum) */
    [AT_CTX] = {"ctx", "B,L,d", T_OUT, .grad = "dctx", .flags = OPT_EMPTY_ZERO},
    [AT_DCTX] = {"dctx", "B,L,d", T_IN, -1, 1, .flags = 0},
    [AT_DQ] = {"dq", "B,L,d", T_OUT, .flags = 0},
    [AT_DK] = {"dk", "B,L,d", T_OUT, .flags = 0},
    [AT_DV] = {"dv", "B,L,d", T_OUT, .flags = 0},
    [AT_DS] = {"ds", "B,L,L", T_SCRATCH, .flags = 0},
    [AT_D] = {"D", "n", T_SCRATCH, .flags = 0},
};
#define ATTN_FWD(P) ext_attn_forward##P(t[AT_Q], t[AT_K], t[AT_V], t[AT_HIST], s->B, s->L, s->d, t[AT_ATT], t[AT_CTX])
#define ATTN_BWD(P) ext_attn_backward##P(t[AT_Q], t[AT_K], t[AT_V], t[AT_ATT], t[AT_DCTX], s->B, s->L, s->d, t[AT_DQ], t[AT_DK], t[AT_DV], t[AT_DS])
CPU_WRAP(attn_fwd, ATTN_FWD)
CPU_WRAP(attn_bwd, ATTN_BWD)
GPU_WRAP(attn_fwd, gpu_ext_attn_forward(g, t[AT_Q], t[AT_K], t[AT_V], t[AT_HIST], s->B, s->L, s->d, t[AT_STATS], t[AT_CTX]))
GPU_WRAP(attn_bwd, gpu_ext_attn_backward(g, t[AT_Q], t[AT_K], t[AT_V], t[AT_HIST], t[AT_STATS], t[AT_DCTX], s->B, s->L, s->d, t[AT_DQ], t[AT_DK], t[AT_DV], t[AT_D]))

/* The weights rebuilt from the GPU's row stats with the kernels' expression (raw scores in
 * float): they must match the CPU's att. */
static void attn_weights_from_stats(const op_case_t *cpu, const op_case_t *h, float *att,
                                    float *want) {
    const float *q = h->t[AT_Q], *k = h->t[AT_K], *stats = h->t[AT_STATS];
    const int32_t *hist = h->t[AT_HIST];
    const int B = h->s.B, L = h->s.L, d = h->s.d;
    memcpy(want, cpu->t[AT_ATT], (size_t)B * L * L * sizeof(float));
    const float sq = sqrtf((float)d);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < L; i++) {
            const int64_t r = (int64_t)b * L + i;
            for (int j = 0; j < L; j++) {
                float sc = 0;
                const float *qi = q + r * d, *kj = k + ((int64_t)b * L + j) * d;
                for (int c = 0; c < d; c++) sc += qi[c] * kj[c];
                att[r * L + j] = hist[(int64_t)b * L + j] > 0
                                     ? expf(sc / sq - stats[2 * r]) * stats[2 * r + 1]
                                     : 0.0f;
            }
        }
}

static double attn_cost(const op_shape_t *s, int bwd, double *flops) {
    const double n = (double)s->B * s->L, nd = n * s->d, LLd = n * s->L * s->d;
    *flops = (bwd ? 8 : 4) * LLd;
    return 4 * (bwd ? 7 * nd + 4 * n : 4 * nd + 3 * n);
}

/* ---- residual + LayerNorm (+ row mask) ------------------------------------------------------- */

enum { LN_A, LN_B, LN_GAMMA, LN_BETA, LN_Y, LN_XHAT, LN_RSTD, LN_DY, LN_DZ, LN_DGAMMA, LN_DBETA,
       LN_WORK, LN_HIST };
static const op_tensor_t ln_t[] = {
    [LN_A] = {"a", "n,d", T_IN, -2, 2, .grad = "dz"},
    [LN_B] = {"b", "n,d", T_IN, -1, 1, .grad = "dz"},
    [LN_GAMMA] = {"gamma", "d", T_IN, 0.5f, 1.5f, .grad = "dgamma"},
    [LN_BETA] = {"beta", "d", T_IN, -0.5f, 0.5f, .grad = "dbeta"},
    [LN_Y] = {"y", "n,d", T_OUT, .grad = "dy"},
    [LN_XHAT] = {"xhat", "n,d", T_OUT, .flags = 0},
    [LN_RSTD] = {"rstd", "n", T_OUT, .flags = 0},
    [LN_DY] = {"dy", "n,d", T_IN, -1, 1, .flags = 0},
    [LN_DZ] = {"dz", "n,d", T_OUT, .flags = 0},
    [LN_DGAMMA] = {"dgamma", "d", T_GRAD_ADD, -1, 1, .flags = OPT_ROWS},
    [LN_DBETA] = {"dbeta", "d", T_GRAD_ADD, -1, 1, .flags = OPT_ROWS},
    [LN_WORK] = {"work", "n,d", T_SCRATCH, .flags = 0},
    [LN_HIST] = {"hist", "B,L", T_IDS, .fill = F_HIST},
};
#define LN_FWD(P, M) layer_add_layernorm_forward##P(t[LN_A], t[LN_B], t[LN_GAMMA], t[LN_BETA], M, n, s->d, t[LN_Y], t[LN_XHAT], t[LN_RSTD])
#define LN_BWD(P, M) layer_add_layernorm_backward##P(t[LN_DY], t[LN_XHAT], t[LN_RSTD], t[LN_GAMMA], M, n, s->d, t[LN_DZ], t[LN_DGAMMA], t[LN_DBETA])
#define LNM_FWD(P) LN_FWD(P, t[LN_HIST])
#define LNM_BWD(P) LN_BWD(P, t[LN_HIST])
#define LNU_FWD(P) LN_FWD(P, NULL)
#define LNU_BWD(P) LN_BWD(P, NULL)
CPU_WRAP(lnm_fwd, LNM_FWD)
CPU_WRAP(lnm_bwd, LNM_BWD)
CPU_WRAP(lnu_fwd, LNU_FWD)
CPU_WRAP(lnu_bwd, LNU_BWD)
#define LN_GFWD(M) gpu_layer_add_layernorm_forward(g, t[LN_A], t[LN_B], t[LN_GAMMA], t[LN_BETA], M, n, s->d, t[LN_Y], t[LN_XHAT], t[LN_RSTD])
#define LN_GBWD(M) gpu_layer_add_layernorm_backward(g, t[LN_DY], t[LN_XHAT], t[LN_RSTD], t[LN_GAMMA], M, n, s->d, t[LN_DZ], t[LN_DGAMMA], t[LN_DBETA], t[LN_WORK])
GPU_WRAP(lnm_fwd, LN_GFWD(t[LN_HIST]))
GPU_WRAP(lnm_bwd, LN_GBWD(t[LN_HIST]))
GPU_WRAP(lnu_fwd, LN_GFWD(NULL))
GPU_WRAP(lnu_bwd, LN_GBWD(NULL))

static double ln_cost(const op_shape_t *s, int bwd, double *flops) {
    const double n = (double)s->B * s->L, nd = n * s->d, d = s->d;
    *flops = (bwd ? 10 : 8) * nd;
    return 4 * (bwd ? 3 * nd + 2 * n + 5 * d : 4 * nd + 2 * n + 2 * d);
}

/* ---- position-wise feed-forward (dff = f of the shape) ---------------------------------------- */

enum { FF_H, FF_W1, FF_B1, FF_W2, FF_B2, FF_R, FF_F, FF_DF, FF_DH, FF_DW1, FF_DB1, FF_DW2, FF_DB2,
       FF_DR };
static const op_tensor_t ffn_t[] = {
    [FF_H] = {"h", "n,d", T_IN, -1, 1, .grad = "dh"},
    [FF_W1] = {"W1", "f,d", T_IN, -1, 1, .grad = "dW1", .flags = OPT_FANIN},
    [FF_B1] = {"b1", "f", T_IN, -0.1f, 0.1f, .grad = "db1"},
    [FF_W2] = {"W2", "d,f", T_IN, -1, 1, .grad = "dW2", .flags = OPT_FANIN},
    [FF_B2] = {"b2", "d", T_IN, -0.1f, 0.1f, .grad = "db2"},
    [FF_R] = {"r", "n,f", T_OUT, .flags = 0},
    [FF_F] = {"f", "n,d", T_OUT, .grad = "df"},
    [FF_DF] = {"df", "n,d", T_IN, -1, 1, .flags = 0},
    [FF_DH] = {"dh", "n,d", T_GRAD_ADD, -1, 1, .flags = 0},
    [FF_DW1] = {"dW1", "f,d", T_GRAD_ADD, -1, 1, .flags = OPT_ROWS},
    [FF_DB1] = {"db1", "f", T_GRAD_ADD, -1, 1, .flags = OPT_ROWS},
    [FF_DW2] = {"dW2", "d,f", T_GRAD_ADD, -1, 1, .flags = OPT_ROWS},
    [FF_DB2] = {"db2", "d", T_GRAD_ADD, -1, 1, .flags = OPT_ROWS},
    [FF_DR] = {"dr", "n,f", T_SCRATCH, .flags = 0},
};
#define FFN_FWD(P) ext_ffn_forward##P(t[FF_H], t[FF_W1], t[FF_B1], t[FF_W2], t[FF_B2], n, s->d, s->f, t[FF_R], t[FF_F])
#define FFN_BWD(P) ext_ffn_backward##P(t[FF_H], t[FF_R], t[FF_W1], t[FF_W2], t[FF_DF], n, s->d, s->f, t[FF_DH], t[FF_DW1], t[FF_DB1], t[FF_DW2], t[FF_DB2], t[FF_DR])
CPU_WRAP(ffn_fwd, FFN_FWD)
CPU_WRAP(ffn_bwd, FFN_BWD)
GPU_WRAP(ffn_fwd, gpu_ext_ffn_forward(g, t[FF_H], t[FF_W1], t[FF_B1], t[FF_W2], t[FF_B2], n, s->d, s->f, t[FF_R], t[FF_F]))
GPU_WRAP(ffn_bwd, gpu_ext_ffn_backward(g, t[FF_H], t[FF_R], t[FF_W1], t[FF_W2], t[FF_DF], n, s->d, s->f, t[FF_DH], t[FF_DW1], t[FF_DB1], t[FF_DW2], t[FF_DB2], t[FF_DR]))

static double ffn_cost(const op_shape_t *s, int bwd, double *flops) {
    const double n = (double)s->B * s->L, nd = n * s->d, df = (double)s->d * s->f;
    *flops = (bwd ? 8 : 4) * n * df;
    return 4 * (bwd ? 4 * nd + n * s->f + 4 * df + 2 * (s->d + s->f)
                    : 2 * nd + n * s->f + 2 * df + s->d + s->f);
}

/* ---- interest attention + weighted sum -------------------------------------------------------- */

enum { IN_X, IN_HIST, IN_W1, IN_B1, IN_W2, IN_B2, IN_T, IN_E, IN_ALPHA, IN_V, IN_DV, IN_DX, IN_DW1,
       IN_DB1, IN_DW2, IN_DB2, IN_DE, IN_DT };
static const op_tensor_t interest_t[] = {
    [IN_X] = {"x", "B,L,d", T_IN, -1, 1, .grad = "dx"},
    [IN_HIST] = {"hist", "B,L", T_IDS, .fill = F_HIST},
    [IN_W1] = {"W1", "a,d", T_IN, -1, 1, .grad = "dW1", .flags = OPT_FANIN},
    [IN_B1] = {"b1", "a", T_IN, -0.2f, 0.2f, .grad = "db1"},
    [IN_W2] = {"W2", "K,a", T_IN, -2, 2, .grad = "dW2", .flags = OPT_FANIN},
    /* b2 shifts every score of an interest: the softmax ignores it */
    [IN_B2] = {"b2", "K", T_IN, -0.2f, 0.2f, .grad = "db2", .flags = OPT_ZERO_GRAD},
    [IN_T] = {"t", "B,L,a", T_OUT, .flags = 0},
    [IN_E] = {"e", "B,L,K", T_OUT, .flags = 0},
    [IN_ALPHA] = {"alpha", "B,K,L", T_OUT, .flags = 0},
    [IN_V] = {"V", "B,K,d", T_OUT, .grad = "dV", .flags = OPT_EMPTY_ZERO},
    [IN_DV] = {"dV", "B,K,d", T_IN, -1, 1, .flags = 0},
    [IN_DX] = {"dx", "B,L,d", T_OUT, .flags = 0},
    [IN_DW1] = {"dW1", "a,d", T_GRAD_ADD, -1, 1, .flags = OPT_ROWS},
    [IN_DB1] = {"db1", "a", T_GRAD_ADD, -1, 1, .flags = OPT_ROWS},
    [IN_DW2] = {"dW2", "K,a", T_GRAD_ADD, -1, 1, .flags = OPT_ROWS},
    [IN_DB2] = {"db2", "K", T_GRAD_ADD, -1, 1, .flags = OPT_ROWS},
    [IN_DE] = {"de", "B,L,K", T_SCRATCH, .flags = 0},
    [IN_DT] = {"dt", "B,L,a", T_SCRATCH, .flags = 0},
};
#define INT_FWD(P) ext_interest_forward##P(t[IN_X], t[IN_HIST], t[IN_W1], t[IN_B1], t[IN_W2], t[IN_B2], s->B, s->L, s->d, s->a, s->K, t[IN_T], t[IN_E], t[IN_ALPHA], t[IN_V])
#define INT_BWD(P) ext_interest_backward##P(t[IN_X], t[IN_T], t[IN_ALPHA], t[IN_W1], t[IN_W2], t[IN_DV], s->B, s->L, s->d, s->a, s->K, t[IN_DX], t[IN_DW1], t[IN_DB1], t[IN_DW2], t[IN_DB2], t[IN_DE], t[IN_DT])
CPU_WRAP(interest_fwd, INT_FWD)
CPU_WRAP(interest_bwd, INT_BWD)
GPU_WRAP(interest_fwd, gpu_ext_interest_forward(g, t[IN_X], t[IN_HIST], t[IN_W1], t[IN_B1], t[IN_W2], t[IN_B2], s->B, s->L, s->d, s->a, s->K, t[IN_T], t[IN_E], t[IN_ALPHA], t[IN_V]))
GPU_WRAP(interest_bwd, gpu_ext_interest_backward(g, t[IN_X], t[IN_T], t[IN_ALPHA], t[IN_W1], t[IN_W2], t[IN_DV], s->B, s->L, s->d, s->a, s->K, t[IN_DX], t[IN_DW1], t[IN_DB1], t[IN_DW2], t[IN_DB2], t[IN_DE], t[IN_DT]))

static double interest_cost(const op_shape_t *s, int bwd, double *flops) {
    const double n = (double)s->B * s->L, nd = n * s->d, na = n * s->a, nK = n * s->K;
    const double nV = (double)s->B * s->K * s->d;
    const double nad = na * s->d, nak = na * s->K, bkld = nV * s->L;
    *flops = (bwd ? 4 : 2) * (nad + nak + bkld);
    return 4 * (bwd ? 2 * nd + 2 * na + 2 * nK + nV : nd + n + na + 2 * nK + nV);
}

/* ---- heads: user vector, candidate scores, ranking loss, distillation ------------------------- */

/* {B, L, d, a, K, C, N, f, temp}: batch, candidates C (column 0 the target), K interests, emb d,
 * N = 300 items (candidate ids below 40: rows of E collect several gradients). Grad: small, one
 * with odd sizes. Parity: batch 1 to 256, C 1 to 1,001 and 60,000 (more scores than shared
 * memory holds), K 1 to 64, emb 16 to 256 (48: not a multiple of the warp). Perf: the
 * reference's training (C 2) and evaluation (C 1,001) shapes, at K 2 and 16. */
static int heads_shapes(op_mode_t mode, op_shape_t *o) {
#define H(b_, c_, k_, d_) {.B = b_, .d = d_, .K = k_, .C = c_, .N = 300, .temp = 0.5}
    /* C 31 and C 2 (BPR) for the ranking loss, temperatures 1 and 0.5 for the distillation */
    static const op_shape_t grad[] = {{.B = 5, .d = 8, .K = 3, .C = 4, .N = 15, .temp = 1.0},
                                      {.B = 2, .d = 12, .K = 2, .C = 3, .N = 7, .temp = 0.5},
                                      {.B = 2, .d = 4, .K = 2, .C = 31, .N = 40, .temp = 1.0},
                                      {.B = 3, .d = 8, .K = 3, .C = 2, .N = 9, .temp = 0.5}};
    static const op_shape_t gpu[] = {
        H(1, 2, 1, 16), H(3, 5, 2, 64), H(256, 2, 2, 64), H(256, 101, 7, 256),
        H(3, 1001, 64, 64), H(256, 2, 64, 16), H(2, 1, 3, 16), H(256, 1001, 2, 64),
        H(256, 2, 16, 64), H(64, 1001, 16, 128), H(17, 33, 5, 48), H(2, 60000, 2, 16),
    };
    static const op_shape_t emu[] = {
        H(1, 2, 1, 16), H(3, 5, 2, 64), H(64, 2, 2, 64), H(4, 101, 7, 32), H(3, 30, 64, 16),
        H(2, 1, 3, 16), H(2, 1001, 2, 16), H(2, 7, 5, 256), H(5, 13, 3, 48), H(2, 60000, 2, 16),
    };
    static const op_shape_t perf[] = {H(256, 2, 2, 64),  H(256, 1001, 2, 64), H(256, 2, 16, 64),
                                      H(256, 1001, 16, 64), H(256, 2, 64, 64), H(8192, 2, 2, 64)};
    static const op_shape_t smoke[] = {H(8, 2, 2, 64)};
#undef H
    return PICK_SHAPES(mode, o);
}

/* The ranking loss needs a negative (C >= 2). */
static int rank_shapes(op_mode_t mode, op_shape_t *o) {
    op_shape_t h[OP_MAX_SHAPES];
    const int k = heads_shapes(mode, h);
    int m = 0;
    for (int i = 0; i < k; i++)
        if (h[i].C >= 2) o[m++] = h[i];
    return m;
}

/* The distillation at two temperatures. */
static int distill_shapes(op_mode_t mode, op_shape_t *o) {
    op_shape_t h[OP_MAX_SHAPES];
    const int k = heads_shapes(mode, h);
    int m = 0;
    for (int i = 0; i < k && m + 2 <= OP_MAX_SHAPES; i++) {
        o[m] = h[i];
        o[m + 1] = h[i];
        o[m + 1].temp = 1.3;
        m += 2;
    }
    return m;
}

/* The CPU heads read E and K, d through a layout: E is its first tensor (offset 0), so E
 * itself serves as the parameter buffer (and dE as the gradient buffer). */
static const model_layout_t *heads_layout(const op_shape_t *s) {
    static model_layout_t lay;
    static int N = -1, d = -1, K = -1;
    if (s->N != N || s->d != d || s->K != K) {
        model_config_t cfg = {.stage = STAGE_FINETUNE, .n_items = s->N, .emb_size = s->d,
                              .attn_size = 4, .K = s->K, .history_max = 4, .n_layers = 1,
                              .temp = 1, .dropout = 0.5};
        char err[256];
        if (model_config_check(&cfg, err, sizeof err)) tmr_fatal("op_table heads: %s", err);
        model_layout_build(&cfg, &lay);
        if (model_offset(&lay, P_EXT_ITEM_EMB) != 0) tmr_fatal("op_table heads: E is not first");
        N = s->N, d = s->d, K = s->K;
    }
    return &lay;
}

/* The same call without the gradient: a parity check of the value alone. */
static int distill_value_shapes(op_mode_t mode, op_shape_t *o) {
    return mode == OPM_PARITY_GPU || mode == OPM_PARITY_EMU ? distill_shapes(mode, o) : 0;
}

/* A CPU call that needs the precision's type T (a returned loss). */
#define CPU_WRAP_T(name, CALL)                                                               \
    static void name##_f(op_case_t *c) {                                                     \
        void *const *t = c->t;                                                               \
        const op_shape_t *s = &c->s;                                                         \
        CALL(_f, float);                                                                     \
    }                                                                                        \
    static void name##_d(op_case_t *c) {                                                     \
        void *const *t = c->t;                                                               \
        const op_shape_t *s = &c->s;                                                         \
        CALL(_d, double);                                                                    \
    }

enum { UV_V, UV_PI, UV_W, UV_U, UV_DU, UV_DV, UV_DPI };
static const op_tensor_t user_t[] = {
    [UV_V] = {"V", "B,K,d", T_IN, -1, 1, .grad = "dV"},
    [UV_PI] = {"pred_intent", "B,K", T_IN, -3, 3, .grad = "dpi"},
    [UV_W] = {"w", "B,K", T_OUT, .flags = 0},
    [UV_U] = {"u", "B,d", T_OUT, .grad = "du"},
    [UV_DU] = {"du", "B,d", T_IN, -1, 1, .flags = 0},
    [UV_DV] = {"dV", "B,K,d", T_GRAD_ADD, -1, 1, .flags = 0},
    [UV_DPI] = {"dpi", "B,K", T_GRAD_ADD, -1, 1, .flags = 0},
};
#define UV_FWD(P) user_vector##P(t[UV_V], t[UV_PI], s->B, s->K, s->d, t[UV_W], t[UV_U])
#define UV_BWD(P) user_vector_backward##P(t[UV_V], t[UV_W], t[UV_DU], s->B, s->K, s->d, t[UV_DV], t[UV_DPI])
CPU_WRAP(user_fwd, UV_FWD)
CPU_WRAP(user_bwd, UV_BWD)
GPU_WRAP(user_fwd, gpu_user_vector(g, t[UV_V], t[UV_PI], s->B, s->K, s->d, t[UV_W], t[UV_U]))
GPU_WRAP(user_bwd, gpu_user_vector_backward(g, t[UV_V], t[UV_W], t[UV_DU], s->B, s->K, s->d, t[UV_DV], t[UV_DPI]))

static double user_cost(const op_shape_t *s, int bwd, double *flops) {
    const double BK = (double)s->B * s->K, BKd = BK * s->d, Bd = (double)s->B * s->d;
    *flops = (bwd ? 4 : 2) * BKd;
    return 4 * (bwd ? 3 * BKd + Bd + 3 * BK : BKd + 2 * BK + Bd);
}

enum { CS_E, CS_U, CS_CAND, CS_S, CS_DS, CS_DU, CS_DE, CS_WORK };
static const op_tensor_t cand_t[] = {
    [CS_E] = {"E", "N,d", T_IN, -1, 1, .grad = "dE"},
    [CS_U] = {"u", "B,d", T_IN, -1, 1, .grad = "du"},
    [CS_CAND] = {"cand", "B,C", T_IDS, .fill = F_CAND},
    [CS_S] = {"scores", "B,C", T_OUT, .grad = "dscores"},
    [CS_DS] = {"dscores", "B,C", T_IN, -1, 1, .flags = 0},
    [CS_DU] = {"du", "B,d", T_GRAD_ADD, -1, 1, .flags = 0},
    [CS_DE] = {"dE", "N,d", T_GRAD_ADD, -1, 1, .flags = 0},
    [CS_WORK] = {"work", "B,C,d", T_SCRATCH, .flags = 0},
};
#define CS_FWD(P) candidate_scores##P(heads_layout(s), t[CS_E], t[CS_U], t[CS_CAND], s->B, s->C, t[CS_S])
#define CS_BWD(P) candidate_scores_backward##P(heads_layout(s), t[CS_E], t[CS_U], t[CS_CAND], s->B, s->C, t[CS_DS], t[CS_DU], t[CS_DE])
CPU_WRAP(cand_fwd, CS_FWD)
CPU_WRAP(cand_bwd, CS_BWD)
GPU_WRAP(cand_fwd, gpu_candidate_scores(g, t[CS_E], t[CS_U], t[CS_CAND], s->B, s->C, s->d, t[CS_S]))
GPU_WRAP(cand_bwd, gpu_candidate_scores_backward(g, t[CS_E], t[CS_U], t[CS_CAND], s->B, s->C, s->d, t[CS_DS], t[CS_DU], t[CS_DE], t[CS_WORK]))

/* E rows gathered count once per candidate. */
static double cand_cost(const op_shape_t *s, int bwd, double *flops) {
    const double BC = (double)s->B * s->C, BCd = BC * s->d, Bd = (double)s->B * s->d;
    *flops = (bwd ? 4 : 2) * BCd;
    return 4 * (bwd ? 2 * BC + 3 * BCd + 3 * Bd : 2 * BC + BCd + Bd);
}

enum { RL_S, RL_LOSS, RL_DLOSS, RL_DS };
static const op_tensor_t rank_t[] = {
    [RL_S] = {"scores", "B,C", T_IN, -4, 4, .grad = "dscores"},
    /* evaluated in double on both sides from the same float scores */
    [RL_LOSS] = {"loss", "1", T_OUT, .grad = "dloss", .tol = 1e-6},
    [RL_DLOSS] = {"dloss", "1", T_IN, 1, 1, .flags = 0},
    [RL_DS] = {"dscores", "B,C", T_OUT, .flags = 0},
};
#define RL_FWD(P, T) *(T *)t[RL_LOSS] = ranking_loss##P(t[RL_S], s->B, s->C, 0, t[RL_DS])
CPU_WRAP_T(rank_fwd, RL_FWD)
#ifdef TIMIREC_CUDA
static void rank_fwd_gpu(gpu_ctx_t *g, op_case_t *c) {
    const float loss = gpu_ranking_loss(g, c->t[RL_S], c->s.B, c->s.C, 0, c->t[RL_DS]);
    gpu_to_device(c->t[RL_LOSS], &loss, sizeof loss);
}
#endif

static double rank_cost(const op_shape_t *s, int bwd, double *flops) {
    (void)bwd;
    *flops = 10.0 * s->B * s->C;
    return 4 * 2.0 * s->B * s->C;
}

enum { DI_E, DI_V, DI_CAND, DI_PI, DI_TGT, DI_LOSS, DI_DLOSS, DI_DPI };
static const op_tensor_t distill_t[] = {
    [DI_E] = {"E", "N,d", T_IN, -1, 1, .flags = 0},
    [DI_V] = {"V", "B,K,d", T_IN, -1, 1, .flags = 0},
    [DI_CAND] = {"cand", "B,C", T_IDS, .fill = F_CAND},
    /* the target is held constant: the gradient flows into pred_intent only */
    [DI_PI] = {"pred_intent", "B,K", T_IN, -3, 3, .grad = "dpi"},
    [DI_TGT] = {"target_intent", "B,K", T_OUT, .flags = 0},
    [DI_LOSS] = {"loss", "1", T_OUT, .grad = "dloss", .tol = 1e-6},
    [DI_DLOSS] = {"dloss", "1", T_IN, 1, 1, .flags = 0},
    [DI_DPI] = {"dpi", "B,K", T_GRAD_ADD, -1, 1, .flags = 0},
};
#define DI_FWD(P, T, DPI) *(T *)t[DI_LOSS] = distill_loss##P(heads_layout(s), t[DI_E], t[DI_V], t[DI_CAND], t[DI_PI], s->B, s->C, 0, s->temp, t[DI_TGT], DPI)
#define DIG_FWD(P, T) DI_FWD(P, T, t[DI_DPI])
#define DIV_FWD(P, T) DI_FWD(P, T, NULL)
CPU_WRAP_T(distill_fwd, DIG_FWD)
CPU_WRAP_T(distill_value_fwd, DIV_FWD)
#ifdef TIMIREC_CUDA
static void distill_gpu_(gpu_ctx_t *g, op_case_t *c, int with_grad) {
    void *const *t = c->t;
    const op_shape_t *s = &c->s;
    const float loss = gpu_distill_loss(g, t[DI_E], t[DI_V], t[DI_CAND], t[DI_PI], s->B, s->C,
                                        s->K, s->d, 0, s->temp, t[DI_TGT],
                                        with_grad ? t[DI_DPI] : NULL);
    gpu_to_device(t[DI_LOSS], &loss, sizeof loss);
}
static void distill_fwd_gpu(gpu_ctx_t *g, op_case_t *c) { distill_gpu_(g, c, 1); }
static void distill_value_fwd_gpu(gpu_ctx_t *g, op_case_t *c) { distill_gpu_(g, c, 0); }
#endif

/* V and the targets' E rows read, the targets and d pred_intent written. */
static double distill_cost(const op_shape_t *s, int bwd, double *flops) {
    (void)bwd;
    const double BK = (double)s->B * s->K, BKd = BK * s->d;
    *flops = 6 * BKd + 20 * BK;
    return 4 * (BKd + (double)s->B * s->d + 4 * BK);
}

/* ---- pretrain evaluation scores: the max over interests (no backward: training uses the
 * argmax interest, test_gpu_heads) ---------------------------------------------------------- */

static int pretrain_eval_shapes(op_mode_t mode, op_shape_t *o) {
    return mode == OPM_GRAD ? 0 : heads_shapes(mode, o);
}

enum { PE_E, PE_V, PE_CAND, PE_S };
static const op_tensor_t pretrain_eval_t[] = {
    [PE_E] = {"E", "N,d", T_IN, -1, 1, .flags = 0},
    [PE_V] = {"V", "B,K,d", T_IN, -1, 1, .flags = 0},
    [PE_CAND] = {"cand", "B,C", T_IDS, .fill = F_CAND},
    [PE_S] = {"scores", "B,C", T_OUT, .flags = 0},
};
#define PE_FWD(P) pretrain_scores##P(heads_layout(s), t[PE_E], t[PE_V], t[PE_CAND], s->B, s->C, 0, NULL, t[PE_S])
CPU_WRAP(pretrain_eval_fwd, PE_FWD)
GPU_WRAP(pretrain_eval_fwd, gpu_pretrain_scores(g, t[PE_E], t[PE_V], t[PE_CAND], s->B, s->C, s->K, s->d, 0, NULL, t[PE_S]))

/* E rows gathered once per candidate, V read, scores written. */
static double pretrain_eval_cost(const op_shape_t *s, int bwd, double *flops) {
    (void)bwd;
    const double BC = (double)s->B * s->C;
    *flops = 2 * BC * s->K * s->d;
    return 4 * (2 * BC + BC * s->d + (double)s->B * s->K * s->d);
}

/* ---- embedding scatter: run lengths around the chunk of 32 ----------------------------------- */

/* gpu_scatter_add_rows against layer_scatter_add: a stable sort of the ids, then each id's
 * run summed in chunks of 32 (the CPU's order, bit for bit, for runs of at most 32 rows:
 * gt_compare_scatter). Pattern 0: run lengths 1, 31, 32, 33, 64, 65, 97, 5,000 (the padding
 * item of a 256 x 20 batch, first in sorted order), 400 short runs (0..5 rows) in between, two
 * long runs side by side, a long run last in sorted order; pattern 1 + i: one id alone with
 * scatter_alone[i] rows (the run is the whole array). The error bound of the long runs' sums
 * and the determinism across calls and emulation orders: test_gpu_scatter. */
enum { SC_SHORT = -1, SC_FIXED = 24, SC_KEYS = SC_FIXED + 400 + 1 };
static const int scatter_fixed[SC_FIXED] = {5000, SC_SHORT, 1, SC_SHORT, 31, SC_SHORT, SC_SHORT,
                                            32, 33, SC_SHORT, 64, SC_SHORT, 97, SC_SHORT, 2,
                                            SC_SHORT, 33, 65, SC_SHORT, 34, 1, SC_SHORT, SC_SHORT,
                                            3};
static const int scatter_alone[] = {0, 1, 31, 32, 33, 64, 65};

/* Rows of key k in pattern r (short runs: a fixed draw of 0..5, the same in every shape). */
static int scatter_run(int r, int k) {
    if (r > 0) return scatter_alone[r - 1];
    const int v = k < SC_FIXED ? scatter_fixed[k] : k == SC_KEYS - 1 ? 65 : SC_SHORT;
    return v == SC_SHORT ? (int)(rng_u32(9, RNG_TEST, 77, (uint64_t)k, 2) % 6u) : v;
}

/* The ids of pattern s->runs (s->T of them) in random order (Fisher-Yates on Philox draws). */
static void scatter_ids(const op_shape_t *s, uint32_t tag, int32_t *ids) {
    const int keys = s->runs ? 1 : SC_KEYS;
    int64_t r = 0;
    for (int k = 0; k < keys; k++)
        for (int j = scatter_run(s->runs, k); j > 0; j--) ids[r++] = k;
    for (int64_t i = r - 1; i > 0; i--) {
        const int64_t j = (int64_t)(rng_u32(9, RNG_TEST, tag, (uint64_t)i, 3) % (uint64_t)(i + 1));
        const int32_t x = ids[i];
        ids[i] = ids[j];
        ids[j] = x;
    }
}

/* Pattern 0 at d 64, 5, 1; each one-id pattern at d 3. Table rows: the keys and 3 untouched.
 * No grad mode (the scatter is the embedding's backward: embed, embed_items). */
static int scatter_shapes(op_mode_t mode, op_shape_t *o) {
    static const int widths[] = {64, 5, 1};
    int m = 0;
    if (mode == OPM_GRAD) return 0;
    for (int i = 0; i < 3 && (i == 0 || mode == OPM_PARITY_GPU || mode == OPM_PARITY_EMU); i++)
        o[m++] = (op_shape_t){.d = widths[i], .runs = 0};
    if (mode == OPM_PARITY_GPU || mode == OPM_PARITY_EMU)
        for (int i = 0; i < NT(scatter_alone); i++) o[m++] = (op_shape_t){.d = 3, .runs = 1 + i};
    for (int i = 0; i < m; i++) {
        const int keys = o[i].runs ? 1 : SC_KEYS;
        o[i].N = keys + 3;
        for (int k = 0; k < keys; k++) o[i].T += scatter_run(o[i].runs, k);
    }
    return m;
}

enum { SC_IDS, SC_SRC, SC_TABLE };
static const op_tensor_t scatter_t[] = {
    [SC_IDS] = {"ids", "T", T_IDS, .fill = F_OP},
    [SC_SRC] = {"src", "T,d", T_IN, -1.5f, 1.5f, .flags = 0},
    [SC_TABLE] = {"table", "N,d", T_GRAD_ADD, -1.5f, 1.5f, .ids = "ids"},
};
#define SC_FWD(P) layer_scatter_add##P(t[SC_IDS], s->T, s->d, t[SC_SRC], t[SC_TABLE])
CPU_WRAP(scatter_fwd, SC_FWD)
GPU_WRAP(scatter_fwd, gpu_scatter_add_rows(g, t[SC_IDS], s->T, s->d, t[SC_SRC], t[SC_TABLE]))

/* ids and rows read, each touched table row read and written. */
static double scatter_cost(const op_shape_t *s, int bwd, double *flops) {
    (void)bwd;
    *flops = (double)s->T * s->d;
    return 4 * ((double)s->T * (1 + s->d) + 2.0 * s->N * s->d);
}

/* ---- GRU on packed rows (predictor_decl.h "Packed order") ------------------------------------ */

/* {B, L, d, lengths}; items below 50. Grad: small, mixed lengths and one long history.
 * Parity: histories of one item to 512, emb 16 to 256 (48: not a multiple of 32; 128: W_hh
 * resident in shared memory; 256: streamed in tiles), several blocks of slots, all lengths
 * equal, one long history among short ones. Perf: the reference's batch, history 20 and
 * 200. */
static int gru_shapes(op_mode_t mode, op_shape_t *o) {
#define G(b_, l_, d_, lens_) {.B = b_, .L = l_, .d = d_, .N = 50, .lens = OP_LEN_##lens_}
    static const op_shape_t grad[] = {G(4, 5, 8, MIXED), G(5, 4, 6, ONE_LONG), G(2, 3, 4, EQUAL)};
    static const op_shape_t gpu[] = {
        G(1, 1, 16, MIXED),      G(3, 20, 64, MIXED),      G(256, 20, 64, MIXED),
        G(256, 20, 64, EQUAL),   G(256, 512, 64, ONE_LONG), G(3, 200, 256, MIXED),
        G(256, 200, 256, MIXED), G(3, 512, 16, MIXED),     G(256, 200, 64, MIXED),
        G(100, 200, 128, EQUAL), G(77, 50, 48, MIXED),
    };
    static const op_shape_t emu[] = {
        G(1, 1, 16, MIXED),     G(3, 20, 16, MIXED),      G(17, 9, 64, MIXED),
        G(40, 20, 64, MIXED),   /* several blocks of slots */
        G(12, 20, 32, EQUAL),   G(9, 200, 16, ONE_LONG),  G(3, 512, 16, ONE_LONG),
        G(6, 30, 48, MIXED),    /* d not a multiple of 32 */
        G(5, 12, 128, MIXED),   /* W_hh resident at 192 KiB */
        G(5, 16, 256, MIXED),   /* W_hh streamed in tiles */
    };
    static const op_shape_t perf[] = {G(256, 20, 64, MIXED), G(256, 200, 64, MIXED)};
    static const op_shape_t smoke[] = {G(8, 20, 64, MIXED)};
#undef G
    return PICK_SHAPES(mode, o);
}

enum { GR_WIH, GR_WHH, GR_BIH, GR_BHH, GR_X, GR_GATES, GR_GHN, GR_H, GR_DH, GR_DGI, GR_DGH, GR_DX,
       GR_DWIH, GR_DWHH, GR_DBIH, GR_DBHH, GR_WORK };
static const op_tensor_t gru_t[] = {
    [GR_WIH] = {"w_ih", "3,d,d", T_IN, -1, 1, .grad = "dw_ih", .flags = OPT_FANIN},
    [GR_WHH] = {"w_hh", "3,d,d", T_IN, -1, 1, .grad = "dw_hh", .flags = OPT_FANIN},
    [GR_BIH] = {"b_ih", "3,d", T_IN, -1, 1, .grad = "db_ih", .flags = OPT_FANIN},
    [GR_BHH] = {"b_hh", "3,d", T_IN, -1, 1, .grad = "db_hh", .flags = OPT_FANIN},
    [GR_X] = {"x", "T,d", T_IN, -1, 1, .grad = "dx"},
    [GR_GATES] = {"gates", "T,3,d", T_OUT, .flags = 0},
    [GR_GHN] = {"ghn", "T,d", T_OUT, .flags = 0},
    [GR_H] = {"h", "T,d", T_OUT, .grad = "dh"},
    /* a gradient on every packed row's output (the model sets the final rows only) */
    [GR_DH] = {"dh", "T,d", T_IN, -1, 1, .flags = 0},
    [GR_DGI] = {"dgi", "T,3,d", T_OUT, .flags = 0},
    /* CPU: the n block (T, d); GPU: all three (T, 3d): compared through gru_dgh */
    [GR_DGH] = {"dgh", "T,3,d", T_SCRATCH, .flags = 0},
    [GR_DX] = {"dx", "T,d", T_OUT, .flags = 0},
    [GR_DWIH] = {"dw_ih", "3,d,d", T_GRAD_ADD, -1, 1, .flags = OPT_ROWS_T},
    [GR_DWHH] = {"dw_hh", "3,d,d", T_GRAD_ADD, -1, 1, .flags = OPT_ROWS_T},
    [GR_DBIH] = {"db_ih", "3,d", T_GRAD_ADD, -1, 1, .flags = OPT_ROWS_T},
    [GR_DBHH] = {"db_hh", "3,d", T_GRAD_ADD, -1, 1, .flags = OPT_ROWS_T},
    [GR_WORK] = {"work", "B,3,d", T_SCRATCH, .flags = 0},
};
#define GRU_FWD(P) gru_forward##P(s->d, t[GR_WIH], t[GR_WHH], t[GR_BIH], t[GR_BHH], c->n_steps, c->batch_sizes, c->step_off, t[GR_X], t[GR_GATES], t[GR_GHN], t[GR_H], t[GR_WORK])
#define GRU_BWD(P) gru_backward##P(s->d, t[GR_WIH], t[GR_WHH], c->n_steps, c->batch_sizes, c->step_off, t[GR_X], t[GR_GATES], t[GR_GHN], t[GR_H], t[GR_DH], t[GR_DGI], t[GR_DGH], t[GR_DX], t[GR_DWIH], t[GR_DWHH], t[GR_DBIH], t[GR_DBHH])
CPU_WRAP(gru_fwd, GRU_FWD)
CPU_WRAP(gru_bwd, GRU_BWD)
/* the packing as the backend passes it: sizes on the host, step offsets on the device */
#define GRU_PACK {c->n_steps, c->n_steps ? c->batch_sizes[0] : 0, s->T, c->step_off_dev}
GPU_WRAP(gru_fwd, const gpu_gru_pack_t pk = GRU_PACK; gpu_gru_forward(g, s->d, t[GR_WIH], t[GR_WHH], t[GR_BIH], t[GR_BHH], &pk, t[GR_X], t[GR_GATES], t[GR_GHN], t[GR_H]))
GPU_WRAP(gru_bwd, const gpu_gru_pack_t pk = GRU_PACK; gpu_gru_backward(g, s->d, t[GR_WIH], t[GR_WHH], &pk, t[GR_X], t[GR_GATES], t[GR_GHN], t[GR_H], t[GR_DH], t[GR_DGI], t[GR_DGH], t[GR_DX], t[GR_DWIH], t[GR_DWHH], t[GR_DBIH], t[GR_DBHH]))

/* The GPU's (T, 3d) recurrent-gate gradients: blocks r, z as the CPU's dgi, n as its dgh. */
static void gru_dgh(const op_case_t *cpu, const op_case_t *gpu, float *got, float *want) {
    const int64_t T = cpu->s.T, d = cpu->s.d, G = 3 * d;
    const float *dgi = cpu->t[GR_DGI], *dgh = cpu->t[GR_DGH];
    memcpy(got, gpu->t[GR_DGH], (size_t)(T * G) * sizeof(float));
    for (int64_t r = 0; r < T; r++)
        for (int64_t j = 0; j < d; j++) {
            want[r * G + j] = dgi[r * G + j];
            want[r * G + d + j] = dgi[r * G + d + j];
            want[r * G + 2 * d + j] = dgh[r * d + j];
        }
}

/* Weights, inputs and what is saved read or written once; one (T, d) x (d, 3d) product is
 * 6 T d^2 flops: two of them forward (input, recurrent), four backward. */
static double gru_cost(const op_shape_t *s, int bwd, double *flops) {
    const double T = (double)s->T, d = s->d, prod = 6.0 * T * d * d;
    *flops = (bwd ? 4 : 2) * prod;
    return 4 * (bwd ? 6 * d * d + 6 * d + T * d * 10 + 3 * 3 * T * d
                    : 6 * d * d + 6 * d + T * d * 6);
}

/* ---- projection MLP (n_layers Linear layers on the GRU's final state; Philox dropout) -------- */

/* A finetune layout of emb d, K interests, s->layers projection layers, dropout s->p: the
 * projection reads its weights from the flat buffer (model.h proj_w / proj_b). */
static const model_layout_t *proj_layout(const op_shape_t *s) {
    static model_layout_t lay;
    static op_shape_t last;
    static int built;
    if (!built || s->d != last.d || s->K != last.K || s->layers != last.layers ||
        s->p != last.p) {
        model_config_t cfg = {.stage = STAGE_FINETUNE, .n_items = 20, .emb_size = s->d,
                              .attn_size = 8, .K = s->K, .history_max = 20, .add_pos = 1,
                              .n_layers = s->layers, .temp = 1, .dropout = s->p};
        char err[256];
        if (model_config_check(&cfg, err, sizeof err)) tmr_fatal("op_table proj: %s", err);
        model_layout_build(&cfg, &lay);
        last = *s, built = 1;
    }
    return &lay;
}

/* The dropout key of a shape (the mask is a constant of the key: grad mode holds it fixed). */
static dropout_key_t proj_key(const op_shape_t *s) {
    return (dropout_key_t){0xfedcba9876543210ull ^ ((uint64_t)s->B << 20) ^ (uint64_t)s->d,
                           123456u + (uint32_t)s->layers};
}

/* {B, d, K, layers, train, p}. Grad: 1 to 4 layers, training and evaluation. Parity: batch 1 to
 * 256, emb 16 to 256, K 1 to 64, dropout 0, 0.2, 0.5; in the emulation smaller. Perf: the
 * reference's batch 256, emb 64, K 2, 2 layers, and K 64 with 4 layers. */
static int proj_shapes(op_mode_t mode, op_shape_t *o) {
#define PJ(b_, d_, k_, l_, p_) {.B = b_, .d = d_, .K = k_, .layers = l_, .p = p_}
    static const op_shape_t grad[] = {PJ(3, 8, 2, 1, 0.5), PJ(4, 8, 3, 2, 0.5), PJ(3, 8, 2, 3, 0.5),
                                      PJ(2, 8, 3, 4, 0.2)};
    static const op_shape_t gpu[] = {PJ(1, 16, 1, 1, 0.5), PJ(3, 64, 2, 2, 0.5),
                                     PJ(256, 64, 2, 2, 0.5), PJ(256, 256, 64, 4, 0.2),
                                     PJ(3, 16, 7, 3, 0.0)};
    static const op_shape_t emu[] = {PJ(1, 16, 1, 1, 0.5), PJ(5, 16, 2, 2, 0.5),
                                     PJ(9, 32, 7, 4, 0.2)};
    static const op_shape_t perf[] = {PJ(256, 64, 2, 2, 0.5), PJ(256, 64, 64, 4, 0.5)};
    static const op_shape_t smoke[] = {PJ(8, 64, 2, 2, 0.5)};
#undef PJ
    op_shape_t src[OP_MAX_SHAPES];
    const int k = PICK_SHAPES(mode, src);
    int m = 0; /* each shape in evaluation and in training mode (perf: training only) */
    for (int i = 0; i < k; i++)
        for (int train = mode == OPM_PERF || mode == OPM_PERF_SMOKE; train <= 1; train++) {
            o[m] = src[i];
            o[m++].train = train;
        }
    return m;
}

enum { PJ_PARAMS, PJ_G, PJ_ACTS, PJ_OUT, PJ_DOUT, PJ_DG, PJ_WORK, PJ_GRADS };
static const op_tensor_t proj_t[] = {
    /* weights of scale 2 / sqrt(d), the rest of the buffer too (unread) */
    [PJ_PARAMS] = {"params", "W", T_IN, -2, 2, .grad = "grads", .flags = OPT_INV_SQRT_D},
    [PJ_G] = {"g", "B,d", T_IN, -1, 1, .grad = "dg"},
    [PJ_ACTS] = {"acts", "hidden,B,d", T_OUT, .flags = 0}, /* the hidden layers' outputs */
    [PJ_OUT] = {"pred_intent", "B,K", T_OUT, .grad = "dout"},
    [PJ_DOUT] = {"dout", "B,K", T_IN, -1, 1, .flags = 0},
    [PJ_DG] = {"dg", "B,d", T_OUT, .flags = 0},
    [PJ_WORK] = {"work", "2,B,d", T_SCRATCH, .flags = 0},
    /* ADDS the projection's weight and bias gradients; the rest of the buffer untouched */
    [PJ_GRADS] = {"grads", "W", T_GRAD_ADD, -1, 1, .flags = OPT_PER_PARAM},
};
#define PJ_FWD(P) proj_forward##P(proj_layout(s), t[PJ_PARAMS], t[PJ_G], s->B, s->train, proj_key(s), 0, 0, t[PJ_ACTS], t[PJ_OUT])
#define PJ_BWD(P) proj_backward##P(proj_layout(s), t[PJ_PARAMS], t[PJ_G], t[PJ_ACTS], s->B, s->train, t[PJ_DOUT], t[PJ_DG], t[PJ_WORK], t[PJ_GRADS])
CPU_WRAP(proj_fwd, PJ_FWD)
CPU_WRAP(proj_bwd, PJ_BWD)
GPU_WRAP(proj_fwd, gpu_proj_forward(g, proj_layout(s), t[PJ_PARAMS], t[PJ_G], s->B, s->train, proj_key(s), 0, 0, t[PJ_ACTS], t[PJ_OUT]))
GPU_WRAP(proj_bwd, gpu_proj_backward(g, proj_layout(s), t[PJ_PARAMS], t[PJ_G], t[PJ_ACTS], s->B, s->train, t[PJ_DOUT], t[PJ_DG], t[PJ_WORK], t[PJ_GRADS]))

/* layers - 1 (d, d) layers and a (K, d) one: weights read (and their gradients written),
 * activations written and read back. */
static double proj_cost(const op_shape_t *s, int bwd, double *flops) {
    const double B = s->B, d = s->d, h = s->layers - 1, wts = h * d * d + (double)s->K * d;
    *flops = (bwd ? 4 : 2) * B * wts;
    return 4 * (bwd ? 3 * wts + B * (2 * h * d + s->K + d) : wts + B * (d + h * d + s->K));
}

/* The dropout mask alone: keep[l, b, j] = proj_dropout_keep(...), int32, bit for bit (no
 * double version: a pure integer op). */
static int mask_shapes(op_mode_t mode, op_shape_t *o) {
#define MK(l_, b_, d_, p_) {.B = b_, .d = d_, .layers = l_, .p = p_}
    static const op_shape_t gpu[] = {MK(3, 256, 64, 0.5), MK(7, 256, 256, 0.2)};
    static const op_shape_t emu[] = {MK(3, 7, 16, 0.5)};
    static const op_shape_t perf[] = {MK(3, 256, 64, 0.5)};
#undef MK
    const op_shape_t *src = mode == OPM_PARITY_GPU ? gpu : mode == OPM_PARITY_EMU ? emu : perf;
    const int k = mode == OPM_GRAD ? 0 : mode == OPM_PARITY_GPU ? NT(gpu) : mode == OPM_PARITY_EMU ? NT(emu) : NT(perf);
    for (int i = 0; i < k; i++) o[i] = src[i];
    return k;
}

enum { MK_KEEP };
static const op_tensor_t mask_t[] = {
    [MK_KEEP] = {"keep", "layers,B,d", T_OUT, .flags = OPT_INT32},
};
static void mask_fwd_f(op_case_t *c) {
    const op_shape_t *s = &c->s;
    const dropout_key_t key = proj_key(s);
    int32_t *keep = c->t[MK_KEEP];
    for (int l = 0; l < s->layers; l++)
        for (int b = 0; b < s->B; b++)
            for (int j = 0; j < s->d; j++)
                keep[((int64_t)l * s->B + b) * s->d + j] =
                    proj_dropout_keep(key.seed, key.step, l, s->B, b, s->d, j, (float)s->p);
}
GPU_WRAP(mask_fwd, gpu_proj_dropout_mask(g, proj_key(s), s->layers, s->B, 0, 0, s->d, (float)s->p, t[MK_KEEP]))

static double mask_cost(const op_shape_t *s, int bwd, double *flops) {
    (void)bwd;
    const double n = (double)s->layers * s->B * s->d;
    *flops = 10 * n; /* a Philox draw per element, roughly */
    return 4 * n;
}

/* ---- Adam over the flat parameter buffer (model.h adam_step; kernels/adam.cu) ---------------- */

/* A finetune layout with every kind of tensor (embeddings, Linear and GRU weights, biases,
 * LayerNorm gains and shifts): N items, emb d, attn a, K, s->layers layers. */
static const model_layout_t *adam_layout(const op_shape_t *s) {
    static model_layout_t lay;
    static op_shape_t last;
    static int built;
    if (!built || s->N != last.N || s->d != last.d || s->a != last.a || s->K != last.K ||
        s->layers != last.layers) {
        model_config_t cfg = {.stage = STAGE_FINETUNE, .n_items = s->N, .emb_size = s->d,
                              .attn_size = s->a, .K = s->K, .history_max = 20, .add_pos = 1,
                              .add_trm = 1, .n_layers = s->layers, .temp = 0.5, .dropout = 0.5};
        model_layout_build(&cfg, &lay); /* unchecked: emb 17 is no trainable config */
        last = *s, built = 1;
    }
    return &lay;
}

/* {N, d, a, K, layers, steps}. Parity: 1 and 3 steps on emb 64, and on odd sizes (emb 17, K 3:
 * tensor ends inside the kernel's groups of four, a partial group at the end of the buffer).
 * Perf: ML-1M's catalogue (K 2 and 16) and 100,000 items, one step. No grad mode: Adam has no backward (and no
 * double version). */
static int adam_shapes(op_mode_t mode, op_shape_t *o) {
#define AD(n_, d_, a_, k_, l_, st_) {.N = n_, .d = d_, .a = a_, .K = k_, .layers = l_, .steps = st_}
    static const op_shape_t parity[] = {AD(501, 64, 8, 2, 3, 1), AD(501, 64, 8, 2, 3, 3),
                                        AD(102, 17, 5, 3, 3, 1), AD(102, 17, 5, 3, 3, 3)};
    static const op_shape_t perf[] = {AD(3707, 64, 8, 2, 2, 1), AD(3707, 64, 8, 16, 2, 1),
                                      AD(100000, 64, 8, 2, 2, 1)};
    static const op_shape_t smoke[] = {AD(102, 17, 5, 3, 3, 1)};
#undef AD
    const op_shape_t *src = mode == OPM_PERF ? perf : mode == OPM_PERF_SMOKE ? smoke : parity;
    const int k = mode == OPM_GRAD        ? 0
                  : mode == OPM_PERF       ? NT(perf)
                  : mode == OPM_PERF_SMOKE ? NT(smoke)
                                           : NT(parity);
    for (int i = 0; i < k; i++) o[i] = src[i];
    return k;
}

/* lr 1e-2 and a large l2 (0.1), so that a wrong weight-decay flag shows. Both sides run
 * math_hd.h's element update; the device may fuse multiply-adds: 1e-6, not exact. */
enum { AD_P, AD_G, AD_M, AD_V, AD_STEP };
static const op_tensor_t adam_tensors[] = {
    /* updated in place: the same random start on both sides, compared (T_GRAD_ADD) */
    [AD_P] = {"params", "W", T_GRAD_ADD, -1, 1, .flags = OPT_PER_PARAM},
    [AD_G] = {"grads", "steps,W4", T_IN, -1, 1, .flags = 0}, /* one per step, 16-byte aligned */
    [AD_M] = {"m", "W", T_GRAD_ADD, -0.1f, 0.1f, .flags = OPT_PER_PARAM},
    [AD_V] = {"v", "W", T_GRAD_ADD, 0, 0.01f, .flags = OPT_PER_PARAM},
    [AD_STEP] = {"step", "1", T_OUT, .flags = OPT_EXACT}, /* the step counter after the steps */
};
static void adam_fwd_f(op_case_t *c) {
    const op_shape_t *s = &c->s;
    const model_layout_t *lay = adam_layout(s);
    adam_t opt;
    adam_init(&opt, 1e-2, 0.1);
    for (int k = 0; k < s->steps; k++)
        adam_step(&opt, lay, c->t[AD_P], (const float *)c->t[AD_G] + k * ((s->W + 3) / 4 * 4),
                  c->t[AD_M], c->t[AD_V]);
    *(float *)c->t[AD_STEP] = (float)opt.step;
}
#ifdef TIMIREC_CUDA
static void adam_fwd_gpu(gpu_ctx_t *g, op_case_t *c) {
    const op_shape_t *s = &c->s;
    const model_layout_t *lay = adam_layout(s);
    adam_t opt;
    adam_init(&opt, 1e-2, 0.1);
    for (int k = 0; k < s->steps; k++)
        gpu_adam_update(g, &opt, lay, c->t[AD_P], (const float *)c->t[AD_G] + k * ((s->W + 3) / 4 * 4),
                        c->t[AD_M], c->t[AD_V]);
    const float step = (float)opt.step;
    gpu_to_device(c->t[AD_STEP], &step, sizeof step);
}
#endif

/* Per step: params, m, v read and written, the gradient read. */
static double adam_cost(const op_shape_t *s, int bwd, double *flops) {
    (void)bwd;
    *flops = 15.0 * s->W * s->steps;
    return 28.0 * s->W * s->steps;
}

/* ---- the table ---------------------------------------------------------------------------------- */

#define CPU_FNS(w) .fwd_f = w##_fwd_f, .bwd_f = w##_bwd_f, .fwd_d = w##_fwd_d, .bwd_d = w##_bwd_d
#define GPU_FNS(w) .fwd_gpu = GPU(w##_fwd), .bwd_gpu = GPU(w##_bwd)
/* An op whose forward computes its gradient too (a loss): no separate backward. */
#define FWD_ONLY(w) .fwd_f = w##_fwd_f, .fwd_d = w##_fwd_d, .fwd_gpu = GPU(w##_fwd)
/* name, tensors (and how many), shapes, the wrappers' prefix, parity tolerance; then the
 * designated fields: .cost, and optionally .derive. */
#define OP(nm, tensors, count, shapes_, w, tol_, ...)                                          \
    {.name = nm, .t = tensors, .nt = count, .shapes = shapes_, CPU_FNS(w), GPU_FNS(w),         \
     .tol = tol_, __VA_ARGS__}

const op_t op_table[] = {
    OP("embed", embed_t, NT(embed_t), ext_shapes, embed, 1e-5, .cost = embed_cost),
    OP("embed_items", embed_t, EM_P, ext_shapes, items, 1e-5, .cost = items_cost),
    OP("linear", linear_t, NT(linear_t), linear_shapes, linear, 1e-5, .cost = linear_cost),
    OP("linear_nobias", linear_t, LI_B, linear_shapes, linnb, 1e-5, .cost = linear_cost),
    OP("attention", attn_t, NT(attn_t), ext_shapes, attn, 1e-5, .cost = attn_cost,
       .derive = attn_weights_from_stats, .derive_of = "att"),
    OP("add_layernorm", ln_t, LN_HIST, ext_shapes, lnu, 1e-5, .cost = ln_cost),
    OP("add_layernorm_mask", ln_t, NT(ln_t), ext_shapes, lnm, 1e-5, .cost = ln_cost),
    OP("ffn", ffn_t, NT(ffn_t), ext_shapes, ffn, 1e-5, .cost = ffn_cost),
    OP("interest", interest_t, NT(interest_t), ext_shapes, interest, 1e-5, .cost = interest_cost),
    OP("gru", gru_t, NT(gru_t), gru_shapes, gru, 1e-5, .cost = gru_cost, .derive = gru_dgh,
       .derive_of = "dgh"),
    OP("user_vector", user_t, NT(user_t), heads_shapes, user, 1e-5, .cost = user_cost),
    OP("candidate_scores", cand_t, NT(cand_t), heads_shapes, cand, 1e-5, .cost = cand_cost),
    {.name = "ranking_loss", .t = rank_t, .nt = NT(rank_t), .shapes = rank_shapes,
     FWD_ONLY(rank), .tol = 1e-5, .cost = rank_cost},
    {.name = "distill_loss", .t = distill_t, .nt = NT(distill_t), .shapes = distill_shapes,
     FWD_ONLY(distill), .tol = 1e-5, .cost = distill_cost},
    {.name = "distill_loss_value", .t = distill_t, .nt = DI_DPI, .shapes = distill_value_shapes,
     FWD_ONLY(distill_value), .tol = 1e-5, .cost = distill_cost},
    {.name = "pretrain_scores_eval", .t = pretrain_eval_t, .nt = NT(pretrain_eval_t),
     .shapes = pretrain_eval_shapes, FWD_ONLY(pretrain_eval), .tol = 1e-5,
     .cost = pretrain_eval_cost},
    {.name = "scatter_runs", .t = scatter_t, .nt = NT(scatter_t), .shapes = scatter_shapes,
     FWD_ONLY(scatter), .tol = 1e-6, .cost = scatter_cost, .fill_ids = scatter_ids},
    OP("projection", proj_t, NT(proj_t), proj_shapes, proj, 1e-5, .cost = proj_cost,
       .layout = proj_layout),
    /* integers: no double version, no grad mode */
    {.name = "proj_dropout_mask", .t = mask_t, .nt = NT(mask_t), .shapes = mask_shapes,
     .fwd_f = mask_fwd_f, .fwd_gpu = GPU(mask_fwd), .tol = 0, .cost = mask_cost},
    /* float only (no double version), no backward: parity and perf, no grad mode */
    {.name = "adam", .t = adam_tensors, .nt = NT(adam_tensors), .shapes = adam_shapes, .fwd_f = adam_fwd_f,
     .fwd_gpu = GPU(adam_fwd), .tol = 1e-6, .cost = adam_cost, .layout = adam_layout},
};
const int op_count = NT(op_table);
