/* The whole model for one batch, composed from the layer operations (one precision; no
 * include guard: cpu_ops.h includes this once per precision). */

/* Workspace sized for max_B x max_L histories and max_C candidates. */
typedef struct {
    int max_B, max_L, max_C;
    R(extractor_cache_t) ext;
    R(predictor_cache_t) pred;   /* finetune only */
    REAL *V, *dV;                /* (B, K, d) interests and their gradient */
    REAL *pred_intent;           /* (B, K) logits of the interest predictor (finetune) */
    REAL *d_pred_intent;         /* (B, K) */
    REAL *target_intent;         /* (B, K) cosine targets (finetune training) */
    REAL *w;                     /* (B, K) softmax(pred_intent) */
    REAL *u, *du;                /* (B, d) user vector (finetune) */
    REAL *scores, *dscores;      /* (B, C) */
    int32_t *kstar;              /* (B) chosen interest (pretrain training) */
    int freeze_target;           /* 1: keep target_intent as it is (gradient checks only) */
    void *block_;                /* the one allocation of the arrays above (act_carve) */
} R(model_ws_t);

/* The caches' and the heads' arrays come from the activation table (model.h): each part
 * carves its own block. model_ws_slots binds every CPU entry of the table to its field (the
 * anomaly scan, numcheck.c, reads the workspace through it). */
void R(model_ws_slots)(R(model_ws_t) *ws, R(act_slot_t) *slot);

void R(model_ws_alloc)(R(model_ws_t) *ws, const model_layout_t *lay, int max_B, int max_L,
                       int max_C);
void R(model_ws_free)(R(model_ws_t) *ws);

/* One training batch: forward, loss (docs/MODEL.md, "Pretrain head" to "Distillation loss"), and
 * backward ADDING d loss / d params into grads (the caller zeroes grads; NULL: forward and loss
 * only). ws->scores, V, pred_intent and target_intent hold the forward values afterwards. Returns
 * the loss. A slice (b->B_all > 0) returns its share: the losses divide by B_all and the
 * dropout draws at rows b->row0 + b (docs/MODEL.md, "Batch slices (data-parallel ranks)"). */
REAL R(model_train_step)(const model_layout_t *lay, const REAL *params, const model_batch_t *b,
                         dropout_key_t key, R(model_ws_t) *ws, REAL *grads);

/* Evaluation scores (B, C) into ws->scores: pretrain max over interests, finetune the
 * softmax-weighted user vector; no dropout. */
void R(model_eval_scores)(const model_layout_t *lay, const REAL *params, const model_batch_t *b,
                          R(model_ws_t) *ws);
