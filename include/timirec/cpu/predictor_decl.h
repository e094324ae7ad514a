/* predictor: declarations for one precision (no include guard: cpu_ops.h includes this file once
 * per precision with REAL and R(name) defined).
 *
 * The finetune stage's interest predictor (docs/MODEL.md, "Interest predictor"): item table E2 =
 * interest_predictor.i_embeddings.weight [N+1, d], a one-layer GRU (PyTorch layout and gate
 * order r, z, n) over each history's REAL items only, h0 = 0, g = the hidden state after the
 * last real item; then the projection MLP, pred_intent = proj(g) (B, K) logits.
 *
 * Packed order. As torch.nn.utils.rnn.pack_padded_sequence with the batch sorted by length
 * (descending; ties keep batch order): perm[i] is the batch row in sorted slot i, step t
 * (0 <= t < n_steps = max length) holds batch_sizes[t] = #{b : length[b] > t} rows, the
 * sequences in slots 0 .. batch_sizes[t]-1, at packed rows step_off[t] .. step_off[t+1]-1.
 * Row step_off[t] + i is item t of sequence perm[i]; its previous hidden state is packed row
 * step_off[t-1] + i (t > 0) or 0 (t = 0). Padding (positions >= length) never enters the GRU:
 * hist may hold anything there. A history of length 0 (never produced by the data pipeline:
 * rows with position 0 are dropped) gets g = h0 = 0.
 *
 * Dropout of the projection (training only; probability p = lay->cfg.dropout; the reference
 * hard-codes nn.Dropout(p=0.5)). Hidden layer i (0 <= i < n_proj-1) computes
 *   a_i = ReLU(Dropout(W_i a_{i-1} + b_i)),  a_{-1} = g,
 * and element (layer i, batch row b, unit j) of a batch of B rows is KEPT iff
 *   rng_uniform01(rng_u32(key.seed, RNG_DROPOUT, key.step,
 *                         (uint64_t)(((int64_t)i * B + b) * d + j), 0)) >= (float)p
 * (the 24-bit uniform compared in float with p rounded to float); a kept value is multiplied
 * by (REAL)(1.0 / (1.0 - p)) (computed in double, then rounded), a dropped one becomes 0.
 * proj_dropout_keep() below is that rule; the GPU must use it as is. */

#ifndef TIMIREC_PREDICTOR_DECL_ONCE
#define TIMIREC_PREDICTOR_DECL_ONCE
#include "timirec/common.h"
#include "timirec/rng.h"

/* The dropout rule above: 1 if element (layer, b, j) of a batch of B rows, width d, is kept.
 * A slice of a larger batch passes the whole batch's B and b (model_batch_t's B_all, row0 + b). */
TMR_HD int proj_dropout_keep(uint64_t seed, uint32_t step, int layer, int B, int b, int d, int j,
                             float p) {
    uint64_t idx = (uint64_t)(((int64_t)layer * B + b) * d + j);
    return rng_uniform01(rng_u32(seed, RNG_DROPOUT, step, idx, 0)) >= p;
}

/* How predictor_forward computes the GRU's input projections W_ih x + b_ih (the cache's
 * input_path; alloc sets AUTO). ROWS: one product over the T packed rows. TABLE: one product
 * over the U distinct E2 rows of the batch, each packed row reading its item's result; the
 * backward sums dL/d(W_ih x + b_ih) per distinct row first, so dW_ih and dE2 are products over
 * U rows too (the same sums, added in another order). AUTO takes TABLE when 4 U <= 3 T. */
enum { PRED_INPUT_AUTO = 0, PRED_INPUT_ROWS = 1, PRED_INPUT_TABLE = 2 };
#endif

/* ---- GRU per-element gate math (host+device: the CUDA kernels call these very functions) --- */

/* Logistic sigmoid, finite for every finite x: the vectorisable vm_sigmoidf in float (see
 * timirec/vmath.h), libm's exp in double. */
TMR_HD REAL R(gru_sigmoid)(REAL x) { return R(vsigmoid)(x); }

/* One hidden unit of one GRU step. gi_* = (W_i* x + b_i*)_j, gh_* = (W_h* h + b_h*)_j, h = h_j.
 * Writes the gate activations r, z, n and returns h'_j = (1 - z) n + z h. */
TMR_HD REAL R(gru_cell_forward)(REAL gi_r, REAL gi_z, REAL gi_n, REAL gh_r, REAL gh_z,
                                REAL gh_n, REAL h, REAL *r, REAL *z, REAL *n) {
    REAL rr = R(gru_sigmoid)(gi_r + gh_r);
    REAL zz = R(gru_sigmoid)(gi_z + gh_z);
    REAL nn = R(vtanh)(gi_n + rr * gh_n);
    *r = rr;
    *z = zz;
    *n = nn;
    return ((REAL)1 - zz) * nn + zz * h;
}

/* Its backward: given the saved r, z, n, gh_n = (W_hn h + b_hn)_j, h = h_j (previous state)
 * and dh_new = dL/dh'_j, writes the gradients wrt the pre-activations
 *   d_ir = dL/d gi_r (= dL/d gh_r), d_iz = dL/d gi_z (= dL/d gh_z), d_in = dL/d gi_n,
 *   d_hn = dL/d gh_n (= r * d_in)
 * and returns the direct part of dL/dh_j, dh_new * z (the W_hh part is a matrix product). */
TMR_HD REAL R(gru_cell_backward)(REAL r, REAL z, REAL n, REAL gh_n, REAL h, REAL dh_new,
                                 REAL *d_ir, REAL *d_iz, REAL *d_in, REAL *d_hn) {
    REAL dn = dh_new * ((REAL)1 - z);
    REAL dz = dh_new * (h - n);
    REAL dan = dn * ((REAL)1 - n * n);
    REAL dr = dan * gh_n;
    *d_ir = dr * r * ((REAL)1 - r);
    *d_iz = dz * z * ((REAL)1 - z);
    *d_in = dan;
    *d_hn = dan * r;
    return dh_new * z;
}

/* ---- packing ---- */

/* Fills perm (B), batch_sizes (L) and step_off (L+1) as described above; returns n_steps
 * (= max length; step_off[n_steps] = sum of lengths = packed rows T). Fatal unless every
 * length is in 0..L. */
int R(gru_pack)(const int32_t *length, int B, int L, int32_t *perm, int32_t *batch_sizes,
                int64_t *step_off);

/* ---- GRU on plain arrays (packed rows; T = step_off[n_steps], n0 = batch_sizes[0]) ---- */

/* w_ih, w_hh [3d, d], b_ih, b_hh [3d] as PyTorch (gate blocks r, z, n).
 * x (T, d) inputs; writes gates (T, 3d) = r, z, n activations, ghn (T, d) = W_hn h_prev + b_hn,
 * h (T, d) = hidden state after each packed row. work: (n0, 3d) scratch. d <= 256. */
void R(gru_forward)(int d, const REAL *w_ih, const REAL *w_hh, const REAL *b_ih, const REAL *b_hh,
                    int n_steps, const int32_t *batch_sizes, const int64_t *step_off,
                    const REAL *x, REAL *gates, REAL *ghn, REAL *h, REAL *work);

/* dh (T, d): on entry dL/dh for every packed row's output (the model sets only the rows that
 * are final states); used as the running gradient and destroyed. dgi (T, 3d), dgh (T, d)
 * scratch (on return: dL/d(W_ih x + b_ih), and the n block of dL/d(W_hh h_prev + b_hh), whose
 * r and z blocks equal dgi's). Writes dx (T, d) (overwrites); ADDS into dw_ih, dw_hh [3d, d]
 * and db_ih, db_hh [3d]. */
void R(gru_backward)(int d, const REAL *w_ih, const REAL *w_hh, int n_steps,
                     const int32_t *batch_sizes, const int64_t *step_off, const REAL *x,
                     const REAL *gates, const REAL *ghn, const REAL *h, REAL *dh, REAL *dgi,
                     REAL *dgh, REAL *dx, REAL *dw_ih, REAL *dw_hh, REAL *db_ih, REAL *db_hh);

/* ---- projection MLP (lay->n_proj Linear layers; weights from params via lay->proj_w/b) ---- */

/* g (B, d) -> out (B, K). acts ((n_proj-1), B, d): each hidden layer's output after dropout
 * and ReLU (saved for backward). training != 0 applies dropout with key (rule above), the B
 * rows being rows row0 .. row0 + B - 1 of a batch of B_all rows (model_batch_t; B_all 0: a
 * whole batch, row0 0): row b draws as row row0 + b of B_all, so a slice's masks are the whole
 * batch's rows. */
void R(proj_forward)(const model_layout_t *lay, const REAL *params, const REAL *g, int B,
                     int training, dropout_key_t key, int row0, int B_all, REAL *acts,
                     REAL *out);

/* dout (B, K) -> dg (B, d) (overwrites); ADDS the layers' weight and bias gradients into
 * grads. g and acts as saved by proj_forward with the same training flag; work: (2, B, d). */
void R(proj_backward)(const model_layout_t *lay, const REAL *params, const REAL *g,
                      const REAL *acts, int B, int training, const REAL *dout, REAL *dg,
                      REAL *work, REAL *grads);

/* ---- the whole predictor ---- */

typedef struct {
    int max_B, max_L, d, K, n_proj;
    /* the last forward */
    int B, L, training, n_steps;
    int64_t T;              /* packed rows */
    int32_t *perm;          /* (max_B) batch row of each sorted slot */
    int32_t *batch_sizes;   /* (max_L) */
    int64_t *step_off;      /* (max_L + 1) */
    REAL *x;                /* (max_B * max_L, d) packed E2 rows */
    REAL *gates;            /* (max_B * max_L, 3d) r, z, n */
    REAL *ghn;              /* (max_B * max_L, d) */
    REAL *h;                /* (max_B * max_L, d) packed hidden states */
    REAL *g;                /* (max_B, d) final hidden state in batch order */
    REAL *acts;             /* (n_proj - 1, max_B, d) projection hidden outputs */
    /* backward scratch */
    REAL *work;             /* (max_B, 3d) */
    REAL *dh;               /* (max_B * max_L, d) */
    REAL *dgi;              /* (max_B * max_L, 3d) */
    REAL *dgh;              /* (max_B * max_L, d) */
    REAL *dx;               /* (max_B * max_L, d) */
    REAL *dg;               /* (max_B, d) */
    REAL *pwork;            /* (2, max_B, d) */
    /* GRU input projections over distinct E2 rows (PRED_INPUT_TABLE); R = min(max_B * max_L,
     * N + 1) rows at most */
    int input_path;         /* PRED_INPUT_*: set by the caller, AUTO after alloc */
    int64_t U;              /* distinct E2 rows if the last forward took the table path, else 0
                             * (then x and dx hold U rows: E2 row uniq[u] and its gradient) */
    int32_t *row_slot;      /* (max_B * max_L) table row of each packed row */
    int32_t *uniq;          /* (R) E2 row of each table row, in order of first use */
    int32_t *slot_of;       /* (N + 1) table row of each E2 row; -1 outside predictor_forward */
    REAL *tab;              /* (R, 3d) W_ih x + b_ih per table row (forward), then the summed
                             * dL/d(W_ih x + b_ih) (backward) */
    void *block_;           /* the one allocation everything above lives in (act_carve) */
} R(predictor_cache_t);

/* The arrays come from the activation table (model.h, group ACT_PREDICTOR), carved from one
 * block; predictor_cache_slots binds each table entry to its field. */
void R(predictor_cache_alloc)(R(predictor_cache_t) *c, const model_layout_t *lay, int max_B,
                              int max_L);
void R(predictor_cache_slots)(R(predictor_cache_t) *c, R(act_slot_t) *slot);
void R(predictor_cache_free)(R(predictor_cache_t) *c);

/* hist (B, L) right-padded item ids (real items in 1..N; row N of E2 exists and is accepted),
 * length (B) in 0..L. Writes pred_intent (B, K). B <= max_B, L <= max_L. row0, B_all: where
 * the rows sit in the whole batch, for the dropout (proj_forward). */
void R(predictor_forward)(const model_layout_t *lay, const REAL *params, const int32_t *hist,
                          const int32_t *length, int B, int L, int training, dropout_key_t key,
                          int row0, int B_all, R(predictor_cache_t) *c, REAL *pred_intent);

/* Same hist/length/B/L as the last forward on c. ADDS dL/d(E2, GRU, projection) into grads. */
void R(predictor_backward)(const model_layout_t *lay, const REAL *params, const int32_t *hist,
                           const int32_t *length, int B, int L, R(predictor_cache_t) *c,
                           const REAL *d_pred_intent, REAL *grads);
