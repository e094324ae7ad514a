/* The model's configuration and its one parameter table (SPEC.md sections 2-6).
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
} model_batch_t;

/* Check a configuration; returns 0 or -1 with a message naming the setting and its range. */
int model_config_check(const model_config_t *cfg, char *err, size_t errlen);

/* Build the table for cfg (which must pass model_config_check). */
void model_layout_build(const model_config_t *cfg, model_layout_t *lay);

/* Offset of a fixed tensor in the flat buffer; fatal if the configuration lacks it. */
int64_t model_offset(const model_layout_t *lay, enum param_id id);
/* Whether the configuration has it. */
static inline int model_has(const model_layout_t *lay, enum param_id id) { return lay->id[id] >= 0; }

/* Initialise params (layout.total floats) per SPEC section 6 from Philox (RNG_INIT, epoch =
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

#ifdef __cplusplus
}
#endif
#endif
