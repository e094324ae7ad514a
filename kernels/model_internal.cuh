/* The CUDA backend's model as its three files share it (private to kernels/; the host sees
 * include/timirec/gpu.h): kernels/model.cu (the device copy of the model and the training step),
 * kernels/epoch.cu (the epoch driver on the resident corpus, CUDA graphs, evaluation phases) and
 * kernels/epoch_staged.cu (host-built batches staged through pinned memory). Here: struct
 * gpu_model and the structs it holds, the allocation helpers (every buffer a step uses is taken
 * once, at gpu_model_create), and the gm_ functions one of these files defines and another
 * calls. */
#ifndef TIMIREC_KERNELS_MODEL_INTERNAL_CUH
#define TIMIREC_KERNELS_MODEL_INTERNAL_CUH

#include <stdlib.h>
#include <string.h>

#include "common.cuh"
#include "data.cuh"
#include "timirec/gpu.h"

#define MAX_ALLOCS 128

struct gpu_model {
    model_layout_t lay;
    gpu_ctx_t *ctx;
    char device[256];
    int max_B, max_L, max_C;
    int d, a, K, dff, add_pos, add_trm, finetune;
    int B, L, C;          /* shape of the last batch */
    void *allocs[MAX_ALLOCS];
    int n_allocs;

    float *params, *grads, *adam_m, *adam_v;  /* (lay.total) */
    int32_t *hist, *pos;  /* (B, L) */
    int32_t *cand;        /* (B, C) */
    int32_t *length;      /* (B) device batches (epoch driver) */

    /* The activations (model.h's table, carved by carve_acts from one allocation); the
     * extractor's as extractor_cache_t (n = B * L rows) */
    float *x0, *q, *k, *v;          /* (n, d) */
    float *att_stats;               /* (B, L, 2) attention row max, 1 / sum */
    float *att_D;                   /* (B, L) attention backward scratch */
    float *ln1_xhat, *h1, *ln2_xhat, *x, *tmp;  /* (n, d); x = x0 without add_trm */
    float *ln1_rstd, *ln2_rstd;     /* (n) */
    float *ffn_r;                   /* (n, dff) */
    float *t, *gt;                  /* (n, a) */
    float *e, *ge;                  /* (n, K) */
    float *alpha;                   /* (B, K, L) */
    float *g0, *g1, *g2, *g3;       /* (n, d) */

    /* heads */
    float *V, *dV;                  /* (B, K, d) */
    float *pred_intent, *d_pred_intent, *target_intent, *w;  /* (B, K) */
    float *u, *du;                  /* (B, d) */
    float *scores, *dscores;        /* (B, C) */
    float *head_work;               /* (B * C, d) rows added into E's gradient */
    int32_t *kstar;                 /* (B) */

    /* predictor (finetune), as predictor_cache_t; T = packed rows <= B * L */
    int32_t *pk_ids;                /* (T) E2 row of each packed row */
    int32_t *final_row;             /* (B) packed row of each sequence's last item, -1: none */
    const int32_t *cur_final;       /* final rows of the batch running (final_row or a plan's) */
    gpu_gru_pack_t pack;            /* the running batch's packing (step offsets on the device) */
    gpu_lazy_adam_t *lazy;          /* LazyAdam's state (gpu_model_lazy_adam), NULL: Adam */
    int64_t *step_off_d;            /* (max_L + 1) device: the per-step path's step offsets */
    float *px, *ghn, *ph, *pdh, *pdx;  /* (T, d) */
    float *gates, *pdgi, *pdgh;     /* (T, 3d) */
    float *pg, *pdg;                /* (B, d) */
    float *acts;                    /* (n_proj - 1, B, d) */
    float *ppwork;                  /* (2, B, d) */
    /* host packing of the last batch */
    int32_t *h_perm, *h_batch_sizes, *h_ids, *h_final;
    int64_t *h_step_off;
    int training;                   /* the last predictor forward */

    /* epoch driver: the losses summed on the device */
    double *rank_rows, *kl_rows;    /* (B) per-row loss terms */
    struct epoch_acc *acc;          /* device */
    /* a plan of batches (shapes and GRU packing) for an epoch or an evaluation phase */
    int64_t plan_cap_n, plan_cap_batches;
    int32_t *plan_L;                /* host (n_batches) padded length of each batch */
    int32_t *plan_perm, *plan_final;        /* host (n): per batch, packed slot -> row, final rows */
    int32_t *plan_batch_sizes;      /* host (n_batches, max_L) */
    int64_t *plan_step_off;         /* host (n_batches, max_L + 1) */
    int32_t *plan_perm_d, *plan_final_d;    /* device copies (n) */
    int64_t *plan_step_off_d;       /* device copy (n_batches, max_L + 1) */
    int64_t *h_order;               /* host (n) the epoch's order */
    int64_t h_order_cap;
    int32_t *eval_len;              /* host scratch */
    int64_t *ranks_d;               /* (n) device ranks of an evaluation phase */
    int64_t ranks_cap;

    /* CUDA graphs of the pretrain step (epoch driver): the step's varying inputs come from
     * device memory, so one captured graph per batch shape replays every batch of it */
    int64_t *batch_ctr;             /* device: the batch the next step trains on */
    adam_scalars_t *adam_by_batch;  /* device (adam_cap) Adam's scalars for each batch */
    adam_scalars_t *h_adam_by_batch;
    int64_t adam_cap;
    struct step_graph *graphs;      /* (MAX_GRAPHS) */
    int n_graphs;
    int graphs_failed;              /* a capture failed once: direct launches for the run */
    char graphs_why[600];
    int fail_next_capture;          /* test hook (gpu_model_test_capture_failure) */
    cudaStream_t stream;            /* graphs are captured on and replayed into this stream */
    void *blas_ws;                  /* cuBLAS's workspace inside captures (no allocation there) */
    /* staged host batches (gpu_train_epoch_staged): two pinned slots, two device slots */
    struct stage_slot *stage;       /* (2), NULL until first used */
    cudaStream_t copy_stream;
};

struct stage_slot {
    batch_t hb;                     /* pinned: the batch as batch_fill writes it */
    int32_t *h_ids, *h_fin;         /* pinned (B * L), (B): GRU packing staged with it */
    int64_t *h_off;                 /* pinned (L + 1): the GRU's step offsets, staged too */
    int32_t *h_perm, *h_sizes;      /* host (B), (L) */
    int32_t *d_hist, *d_pos, *d_cand, *d_ids, *d_fin;  /* device copies */
    int64_t *d_off;
    cudaEvent_t copied;             /* the slot's copies are done: the pinned slot is free */
    cudaEvent_t used;               /* the step reading the device slot is done */
};

/* One captured step: its shape, and the allocation generation it was captured at (a graph
 * holds pointers into the corpus, the model, the context's scratch and the epoch's Adam table:
 * after any device allocation or free, gpu_alloc_generation moves on and the graph is stale). */
#define MAX_GRAPHS 16
#define BLAS_WORKSPACE ((size_t)32 << 20) /* cuBLAS's recommendation for Hopper */
struct step_graph {
    int B, L, C, bs;
    uint64_t generation;
    int seen;                       /* batches of this shape launched directly so far */
    cudaGraphExec_t exec;           /* NULL: not captured (yet, or stale) */
};

/* The epoch's running sums on the device (read once when the epoch stops). */
struct epoch_acc {
    double loss_sum;    /* losses of the applied batches, added in batch order */
    int64_t bad;        /* first batch with a non-finite loss, -1: none */
    float bad_loss, last_loss;
};

/* A device buffer the model owns (freed by gpu_model_free). */
static inline void *take(gpu_model_t *g, size_t bytes) {
    if (g->n_allocs >= MAX_ALLOCS) tmr_fatal("gpu_model: more than %d device buffers", MAX_ALLOCS);
    void *p = gpu_malloc(bytes);
    g->allocs[g->n_allocs++] = p;
    return p;
}
static inline float *take_f(gpu_model_t *g, size_t count) {
    return (float *)take(g, tmr_mul_size(count, sizeof(float)));
}
static inline int32_t *take_i(gpu_model_t *g, size_t count) {
    return (int32_t *)take(g, tmr_mul_size(count, sizeof(int32_t)));
}

/* The epoch plan's buffers (host and device), grown by plan_batches (kernels/epoch.cu). */
static inline void plan_free(gpu_model_t *g) {
    free(g->plan_L);
    free(g->plan_perm);
    free(g->plan_final);
    free(g->plan_batch_sizes);
    free(g->plan_step_off);
    gpu_free(g->plan_perm_d);
    gpu_free(g->plan_final_d);
    gpu_free(g->plan_step_off_d);
}

/* ---- defined in kernels/model.cu ---- */

/* The GRU's packing of a host batch (as gru_pack), into host arrays; returns the steps. */
int gm_pack_compute(const model_batch_t *b, const char *who, int32_t *perm, int32_t *batch_sizes,
                    int64_t *step_off, int32_t *ids, int32_t *fin, int64_t *T);
/* The extractor's forward over the batch in g's device buffers (hist, pos; shape g->B x g->L). */
void gm_extractor_forward(gpu_model_t *g);
/* The interest predictor's forward (finetune), after the batch's packing is in place; row0,
 * B_all: where the rows sit in the whole batch (model_batch_t), for the dropout. */
void gm_predictor_forward(gpu_model_t *g, int training, dropout_key_t key, int row0, int B_all);
/* Forward, loss and backward of the batch in g's device buffers: batch < 0 and no batch_ctr
 * returns the loss (the host waits); else the loss goes into the device's epoch sums. row0,
 * B_all: the batch as a slice of a whole batch (model_batch_t; 0, 0: a whole batch). */
float gm_train_step_device(gpu_model_t *g, dropout_key_t key, int row0, int B_all,
                           int64_t batch, const int64_t *batch_ctr);

/* LazyAdam: the running batch's touched rows into *lb (returned), NULL with Adam. */
const gpu_lazy_batch_t *gm_lazy_batch(gpu_model_t *g, gpu_lazy_batch_t *lb);
/* One step of an epoch driver on the batch in g's buffers: gm_train_step_device into the
 * epoch's sums as batch `batch`, then the guarded optimiser update (LazyAdam's rows with
 * it), nothing read back. */
void gm_step_update(gpu_model_t *g, adam_t *opt, dropout_key_t key, int64_t batch);

/* ---- defined in kernels/epoch.cu ---- */

/* An epoch driver's report once its queue is drained (the batches applied, the loss sums, the
 * step and Adam counters). */
void gm_epoch_finish(gpu_epoch_t *e, adam_t *opt, const struct epoch_acc *acc, int64_t bi,
                     int64_t step0, int64_t adam0);

#endif
