/* The model's configuration, its one parameter table (docs/MODEL.md, "Parameters") and its one
 * activation table (below).
 *
 * Every trainable tensor is an entry of model_layout_t: its reference state_dict name, shape,
 * offset in one flat buffer, and whether Adam applies weight decay to it (names without
 * "bias"). Parameters, gradients and both Adam moments are flat buffers of layout.total
 * elements with this same layout, so the optimiser is one loop and the checkpoint writer walks
 * the same table. Linear weights are stored [out, in] as in PyTorch. */
#ifndef TIMIREC_MODEL_H
#define TIMIREC_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { STAGE_PRETRAIN = 0, STAGE_FINETUNE = 1 };
#define MODEL_MAX_PROJ 8      /* n_layers up to 8: proj_0 .. proj_6 + proj_final */
#define MODEL_MAX_TENSORS 48

typedef struct {
    int stage;        /* STAGE_PRETRAIN or STAGE_FINETUNE */
    int n_items;      /* N = 1 + max item id */
    int emb_size;     /* d */
    int attn_size;    /* a */
    int K;            /* interests */
    int history_max;  /* position table has history_max + 1 rows */
    int add_pos;
    int add_trm;
    int n_layers;     /* projection: n_layers - 1 hidden Linear(d,d)+Dropout+ReLU, then Linear(d,K) */
    double temp;      /* distillation temperature */
    double dropout;   /* projection dropout probability (0.5 in the reference) */
} model_config_t;

/* Fixed tensors. The projection's layers are indexed separately (proj_w / proj_b). */
enum param_id {
    P_EXT_ITEM_EMB,  /* interest_extractor.i_embeddings.weight [N, d] */
    P_EXT_POS_EMB,   /* interest_extractor.p_embeddings.weight [history_max+1, d] (add_pos) */
    P_EXT_W1,        /* interest_extractor.W1.weight [a, d] */
    P_EXT_B1,        /* interest_extractor.W1.bias [a] */
    P_EXT_W2,        /* interest_extractor.W2.weight [K, a] */
    P_EXT_B2,        /* interest_extractor.W2.bias [K] */
    P_TRM_WQ,        /* ...transformer.masked_attn_head.q_linear.weight [d, d] (add_trm) */
    P_TRM_BQ,
    P_TRM_WK,
    P_TRM_BK,
    P_TRM_WV,
    P_TRM_BV,
    P_TRM_LN1_G,     /* ...transformer.layer_norm1.weight [d] */
    P_TRM_LN1_B,     /* ...transformer.layer_norm1.bias [d] */
    P_TRM_FF1_W,     /* ...transformer.linear1.weight [d, d] */
    P_TRM_FF1_B,
    P_TRM_FF2_W,     /* ...transformer.linear2.weight [d, d] */
    P_TRM_FF2_B,
    P_TRM_LN2_G,
    P_TRM_LN2_B,
    P_PRED_ITEM_EMB, /* interest_predictor.i_embeddings.weight [N+1, d] (finetune) */
    P_GRU_W_IH,      /* interest_predictor.rnn.weight_ih_l0 [3d, d], gates (r, z, n) */
    P_GRU_W_HH,      /* interest_predictor.rnn.weight_hh_l0 [3d, d] */
    P_GRU_B_IH,      /* interest_predictor.rnn.bias_ih_l0 [3d] */
    P_GRU_B_HH,      /* interest_predictor.rnn.bias_hh_l0 [3d] */
    P_COUNT
};

typedef enum { INIT_NORMAL_001, INIT_ONES, INIT_ZEROS, INIT_GRU_UNIFORM } init_kind_t;

typedef struct {
    char name[96];     /* reference state_dict key */
    int64_t rows, cols; /* shape [rows, cols]; vectors have cols = 0 (1-D) */
    int64_t offset;    /* in the flat buffer */
    int64_t size;      /* elements */
    int decay;         /* gets l2 weight decay (name has no "bias") */
    int no_grad;       /* gradient identically zero: W2.bias and k_linear.bias shift a whole
                          softmax row (PyTorch gets rounding noise there; we get exact zeros) */
    init_kind_t init;
} param_t;

typedef struct {
    model_config_t cfg;
    int n_tensors;
    param_t t[MODEL_MAX_TENSORS];   /* in state_dict order */
    int64_t total;                  /* elements of the flat buffer */
    int id[P_COUNT];                /* table index of each fixed tensor, -1 when absent */
    int n_proj;                     /* Linear layers of the projection (= n_layers; 0 in pretrain) */
    int proj_w[MODEL_MAX_PROJ];     /* table index of proj layer i's weight (last = proj_final) */
    int proj_b[MODEL_MAX_PROJ];
} model_layout_t;

/* Dropout randomness: keep element i of a mask with probability 1 - p, from Philox
 * (seed, RNG_DROPOUT, epoch = step, index = i); kept elements are scaled by 1 / (1 - p). */
typedef struct {
    uint64_t seed;
    uint32_t step;   /* global training step: a fresh mask every step */
} dropout_key_t;

/* One batch as the model reads it (the sampler's batch_t fields). */
typedef struct {
    int B, L, C;
    const int32_t *hist;    /* (B, L) item ids, right-padded with 0 */
    const int32_t *pos;     /* (B, L) position index: length - l, 0 for padding */
    const int32_t *length;  /* (B) */
    const int32_t *cand;    /* (B, C) target first */
    /* A slice of a larger batch (the ranks of a data-parallel run): these B rows are rows
     * row0 .. row0 + B - 1 of a batch of B_all rows. The loss and its gradients are divided by
     * B_all, so the slices' losses and gradients sum to the whole batch's, and the dropout
     * masks are drawn at the rows' places in the whole batch. B_all 0: a whole batch (row0 0,
     * B_all = B), as every single-process caller leaves it. */
    int row0, B_all;
} model_batch_t;

/* The rows a batch's means are taken over and its dropout rows are numbered in: B_all, or B
 * for a whole batch (B_all 0). */
static inline int model_rows_all(int B, int B_all) { return B_all > 0 ? B_all : B; }
/* 0 if rows row0 .. row0 + B - 1 fit in a batch of B_all rows (row0 0 when B_all is 0), else
 * -1 (the callers stop with a message naming the numbers). */
static inline int model_slice_check(int B, int row0, int B_all) {
    return row0 >= 0 && (B_all == 0 ? row0 == 0 : B <= B_all && row0 <= B_all - B) ? 0 : -1;
}

/* ---- The activation table ----------------------------------------------------------------
 *
 * Every intermediate tensor of a training step, both stages, both backends: its name, its
 * shape as size symbols (the batch's B, L, C and the layout's sizes, with the derived ones
 * such as dff and 3d decided here once), which pass needs it, which part of the model owns it
 * and which backend has it. One table drives the CPU workspace allocation (src/cpu: one block
 * per part, carved by act_carve), the CUDA model's buffers (one device allocation carved in
 * gpu_model_create), the memory estimate (memplan.c) and the anomaly scan (numcheck.c, which
 * scans the entries in table order: forward order, then backward).
 *
 * Adding a tensor: an id below (in the order numcheck should scan it), its row in
 * model_acts[] (src/cpu/model.c), and a pointer field bound to the id by each backend that
 * has it (extractor_cache_slots / predictor_cache_slots / model_ws_slots on the CPU,
 * model_slots in kernels/model.cu on the GPU); allocation, estimate and scan follow. Not in
 * the table: the attention's per-thread scratch of the CPU (allocated inside the op; memplan
 * adds it) and the host-side GRU packing of the GPU model. */

/* Size symbols a shape is written in. */
enum act_dim {
    AD_NONE,  /* unused trailing dimension */
    AD_B,     /* batch rows */
    AD_L,     /* history length */
    AD_C,     /* candidates per row */
    AD_D,     /* d = emb_size */
    AD_A,     /* a = attn_size */
    AD_K,     /* interests */
    AD_DFF,   /* the transformer's feed-forward width: d (the reference's d_ff = d) */
    AD_3D,    /* the GRU's three gates: 3d */
    AD_T,     /* packed GRU rows (sum of lengths): B L at capacity */
    AD_U,     /* distinct E2 rows of a batch: min(B L, N + 1) at capacity */
    AD_NP,    /* projection hidden layers: max(n_layers - 1, 1) */
    AD_N1,    /* E2's rows: N + 1 */
    AD_L1,    /* L + 1 step offsets */
    AD_2,     /* 2 */
    AD_COUNT
};

/* In numcheck's scan order: the extractor's forward, V, the predictor's forward, the heads,
 * the gradients; then what is never scanned (scratch, integers, backend-specific buffers). */
enum act_id {
    A_X0, A_Q, A_K, A_V, A_ATT, A_LN1_RSTD, A_LN1_XHAT, A_H1, A_FFN_R, A_LN2_RSTD, A_LN2_XHAT,
    A_X, A_T, A_E, A_ALPHA,
    A_INTERESTS,
    A_PRED_X, A_PRED_XU, A_PRED_GATES, A_PRED_GHN, A_PRED_H, A_PRED_G, A_PRED_ACTS,
    A_PRED_INTENT, A_W, A_U, A_TARGET_INTENT, A_SCORES,
    A_DSCORES, A_DU, A_DV, A_D_PRED_INTENT,
    A_PRED_DG, A_PRED_DGI, A_PRED_DGH, A_PRED_TAB, A_PRED_DXU, A_PRED_DX,
    /* not scanned */
    A_TMP, A_G0, A_G1, A_G2, A_G3, A_GS, A_GE, A_GT, A_ATT_STATS, A_ATT_D,
    A_KSTAR, A_HEAD_WORK,
    A_PRED_DH, A_PRED_WORK, A_PRED_PWORK, A_PRED_DGH3, A_PRED_PERM, A_PRED_BATCH_SIZES,
    A_PRED_STEP_OFF, A_PRED_ROW_SLOT, A_PRED_UNIQ, A_PRED_SLOT_OF, A_PRED_IDS, A_PRED_FINAL_ROW,
    A_COUNT
};

enum act_type { ACT_F32, ACT_I32, ACT_I64 };   /* ACT_F32: REAL on the CPU (float or double) */
enum act_pass {
    ACT_FWD,      /* written and read by the forward only */
    ACT_SAVED,    /* written by the forward, kept for the backward */
    ACT_SCRATCH   /* gradients and temporaries of one pass */
};
enum act_group { ACT_EXTRACTOR, ACT_PREDICTOR, ACT_HEADS };  /* which part allocates it */
enum { ACT_CPU = 1, ACT_GPU = 2 };                           /* act_desc_t.backends bits */
enum act_need { ACT_ALWAYS, ACT_TRM, ACT_FINETUNE };         /* configurations that have it */
/* When numcheck scans an entry (conditions on the workspace's last step; numcheck.c). */
enum act_scan {
    SCAN_NO,            /* not scanned (scratch, integers, not written in full) */
    SCAN_YES,
    SCAN_FINETUNE,      /* finetune stage only */
    SCAN_TARGET,        /* finetune, unless the targets are frozen (gradient checks) */
    SCAN_ROWS,          /* the GRU inputs went row by row (predictor U = 0) */
    SCAN_TABLE,         /* ... through the distinct-row table (U > 0) */
    SCAN_PROJ,          /* the projection has hidden layers */
    SCAN_GRU_BWD,       /* the GRU backward ran (T > 0) */
    SCAN_GRU_BWD_ROWS,  /* ... on the row path */
    SCAN_GRU_BWD_TABLE  /* ... on the table path */
};

typedef struct {
    const char *name;          /* what the anomaly scan prints, e.g. "extractor.e (interest scores)" */
    unsigned char dims[3];     /* enum act_dim; AD_NONE pads */
    unsigned char type;        /* enum act_type */
    unsigned char pass;        /* enum act_pass */
    unsigned char group;       /* enum act_group */
    unsigned char backends;    /* ACT_CPU | ACT_GPU */
    unsigned char need;        /* enum act_need */
    unsigned char scan;        /* enum act_scan */
    signed char alias;         /* the id whose storage this view shares (no storage of its own),
                                  -1: none */
} act_desc_t;

extern const act_desc_t model_acts[A_COUNT];

/* The table evaluated for one configuration and batch shape. Counts saturate at UINT64_MAX. */
typedef struct {
    int64_t sym[AD_COUNT];     /* each symbol's value */
    int present[A_COUNT];      /* the configuration has the tensor */
    uint64_t count[A_COUNT];   /* elements */
} act_table_t;

/* The table for lay at batch capacity B x L x C (T = B L, U = min(B L, N + 1)). */
void model_acts_build(const model_layout_t *lay, int64_t B, int64_t L, int64_t C, act_table_t *t);
/* Re-evaluate the counts for T packed rows and U distinct E2 rows (a step's actual values). */
void model_acts_set_rows(act_table_t *t, int64_t T, int64_t U);
/* "(B, L, d)": the shape of model_acts[id] in symbols, into out. Returns out. */
const char *model_act_shape(int id, char *out, size_t outlen);
/* One block holding the present entries of the groups in `groups` (bit mask of 1 << group)
 * that `backend` (ACT_CPU or ACT_GPU) has and that are not aliases, each at an offset rounded
 * up to `align` bytes, ACT_F32 elements of real_size bytes. Writes each entry's offset into
 * off (may be NULL; UINT64_MAX: not in the block) and returns the block's bytes, or
 * UINT64_MAX for a block of 2^62 bytes or more. */
uint64_t model_acts_block(const act_table_t *t, int backend, unsigned groups, size_t real_size,
                          size_t align, uint64_t *off);
#define ACT_ALIGN 64  /* CPU blocks: entries start on cache lines */

/* Check a configuration; returns 0 or -1 with a message naming the setting and its range. */
int model_config_check(const model_config_t *cfg, char *err, size_t errlen);

/* Build the table for cfg (which must pass model_config_check). */
void model_layout_build(const model_config_t *cfg, model_layout_t *lay);

/* Offset of a fixed tensor in the flat buffer; fatal if the configuration lacks it. */
int64_t model_offset(const model_layout_t *lay, enum param_id id);
/* Whether the configuration has it. */
static inline int model_has(const model_layout_t *lay, enum param_id id) { return lay->id[id] >= 0; }

/* Initialise params (layout.total floats) per docs/MODEL.md "Initialisation" from Philox (RNG_INIT, epoch =
 * tensor index in the table, index = element): Normal(0, 0.01) for Linear weights and biases
 * and embedding tables (Box-Muller on two 24-bit uniforms), LayerNorm gamma 1 / beta 0, GRU
 * Uniform(-1/sqrt(d), 1/sqrt(d)). */
void model_init_params(const model_layout_t *lay, uint64_t seed, float *params);

/* Copy every tensor of src that dst also has (same name and shape), as the reference's
 * finetune stage loads the pretrained extractor. Returns the number of tensors copied. */
int model_copy_shared(const model_layout_t *dst_lay, float *dst, const model_layout_t *src_lay,
                      const float *src);

/* The table as the run prints it: one line per tensor and the "#params" total. */
void model_layout_print(const model_layout_t *lay, FILE *out);

/* Adam exactly as torch.optim.Adam (amsgrad off) with coupled L2 (weight_decay added to the
 * gradient) on tensors with decay: for every element of the flat buffer, dense,
 *   g = grad + l2 * theta (decay tensors only)
 *   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
 *   theta -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
 * computed as PyTorch's single-tensor path does (torch 1.5 to 1.13, which generates the golden
 * files; 2.x differs only in rounding): step_size = lr / bc1, denom = sqrt(v) / sqrt(bc2) + eps,
 * theta -= step_size * m / denom. step t counts from 1. The reference pinned torch 1.1, whose
 * Adam added eps before the bias correction (denom = sqrt(v) + eps, step_size =
 * lr sqrt(bc2) / bc1); the two differ only where sqrt(v) is near eps, i.e. rows that see no
 * gradient but l2. */
typedef struct {
    double lr, beta1, beta2, eps, l2;
    int64_t step;   /* steps taken so far */
} adam_t;

void adam_init(adam_t *opt, double lr, double l2);
void adam_step(adam_t *opt, const model_layout_t *lay, float *params, const float *grads,
               float *m, float *v);

/* LazyAdam (--optimizer LazyAdam; docs/MODEL.md "Optimiser"): the item tables (the lazy
 * tables: interest_extractor.i_embeddings.weight and, in finetune,
 * interest_predictor.i_embeddings.weight) are updated only in the rows the step touches, each
 * with its own step count t_r (TensorFlow Addons' LazyAdam, PyTorch's SparseAdam: the bias
 * corrections of row r use t_r, incremented when r is touched); the element update and the
 * coupled L2 are adam_step's (tmr_adam_elem), so a row touched at every step is updated bit
 * for bit as adam_step updates it. Every other tensor gets adam_step's dense update, and
 * opt->step still counts the steps. The rows a step touches are those the embedding backward
 * scatters into: of the extractor's table every (b, l) of hist (padding included) and every
 * candidate; of the predictor's table hist[b, l] for l < length[b] (the GRU's packed rows).
 * row_step holds the lazy tables' rows one after the other (adam_lazy_rows in all), table
 * order as in the layout; zero initially. */
int64_t adam_lazy_rows(const model_layout_t *lay);
/* The lazy tables' tensor indices into ids (room for 2); returns how many. */
int adam_lazy_tensors(const model_layout_t *lay, int *ids);
/* Where lazy row r (row_step's numbering: table ids[0]'s rows, then ids[1]'s) starts in a flat
 * buffer of the layout (parameters, gradients, moments); *p (when not NULL) gets its tensor.
 * ids as adam_lazy_tensors fills them. */
static inline int64_t adam_lazy_row_offset(const model_layout_t *lay, const int *ids, int64_t r,
                                           const param_t **p) {
    const int64_t split = lay->t[ids[0]].rows; /* the first row of the second table */
    const param_t *q = &lay->t[r < split ? ids[0] : ids[1]];
    if (p) *p = q;
    return q->offset + (r < split ? r : r - split) * (int64_t)lay->cfg.emb_size;
}
/* The distinct rows of the lazy tables mb touches, as indices into row_step (each once, in
 * order of first appearance), into rows (room for adam_lazy_cap(B, L, C)); returns how
 * many. row_step is used as the marker and left as it was. */
int64_t adam_lazy_touched(const model_layout_t *lay, const model_batch_t *mb, int64_t *row_step,
                          int64_t *rows);
/* Room adam_lazy_touched needs for a batch of B x L histories and C candidates. */
static inline int64_t adam_lazy_cap(int64_t B, int64_t L, int64_t C) { return B * (2 * L + C); }
/* One LazyAdam step: the dense update of the other tensors, then the touched rows. */
void adam_step_lazy(adam_t *opt, const model_layout_t *lay, const model_batch_t *mb,
                    float *params, const float *grads, float *m, float *v, int64_t *row_step);
/* The same with the touched rows given (n of them, from adam_lazy_touched). */
void adam_step_lazy_rows(adam_t *opt, const model_layout_t *lay, const int64_t *rows, int64_t n,
                         float *params, const float *grads, float *m, float *v,
                         int64_t *row_step);

#ifdef __cplusplus
}
#endif
#endif
