/* extractor: declarations for one precision (no include guard: cpu_ops.h includes this file once
 * per precision with REAL and R(name) defined).
 *
 * The multi-interest extractor of docs/MODEL.md, "Interest extractor" (reference: TiMiRec.py
 * MultiInterestExtractor and layers.py TransformerLayer with n_heads 1, d_ff = d, dropout 0):
 *
 *   x0 = E[hist] + P[pos]                                   layer_embed    (add_pos; else E[hist])
 *   q,k,v = x0 Wq^T + bq, ...                               layer_linear   (add_trm)
 *   ctx = softmax_j(q k^T / sqrt(d), keys with hist = 0 masked) v        ext_attn
 *   h1 = LN1(ctx + x0)                                      layer_add_layernorm
 *   f = W_ff2 relu(W_ff1 h1 + b_ff1) + b_ff2                ext_ffn
 *   x = LN2(f + h1) * m                                     layer_add_layernorm (row mask)
 *   e = W2 tanh(W1 x + b1) + b2; alpha = masked softmax over l; V = alpha x   ext_interest
 *
 * The generic layers (layer_*) are declared in layers_decl.h. Every sub-op is one
 * forward/backward pair on plain arrays: the single reference implementation of that op
 * (extractor_forward/backward compose them; the CUDA kernels are tested against them).
 * Shapes are in the comments; n = B * L rows. "Valid" row/key r means hist[r] > 0. Unless a
 * comment says otherwise, backward functions ADD into parameter gradients (dW, db, dgamma,
 * dbeta, dE, dP); input gradients are either overwritten or accumulated as documented per
 * function. Masked softmax rows with no valid entry give all
 * zeros (never NaN). Results do not depend on the OpenMP thread count (every sum has a fixed
 * order; no atomics), given a deterministic gemm. */

/* ---- masked single-head scaled dot-product attention -------------------------------------- */

/* Per batch row b: s[i,j] = q_i . k_j / sqrt(d); keys with hist[b,j] <= 0 masked out;
 * att[i,:] = softmax_j (row max of the valid scores subtracted; no valid key: all 0);
 * ctx_i = sum_j att[i,j] v_j. Every query row (padded ones too) is computed.
 * q, k, v (B, L, d); hist (B, L) key mask; att (B, L, L) saved; ctx (B, L, d) overwritten. */
void R(ext_attn_forward)(const REAL *q, const REAL *k, const REAL *v, const int32_t *hist, int B,
                         int L, int d, REAL *att, REAL *ctx);
/* Gradients of the above: dq, dk, dv (B, L, d) overwritten; dctx (B, L, d);
 * ds (B, L, L) scratch. */
void R(ext_attn_backward)(const REAL *q, const REAL *k, const REAL *v, const REAL *att,
                          const REAL *dctx, int B, int L, int d, REAL *dq, REAL *dk, REAL *dv,
                          REAL *ds);

/* ---- position-wise feed-forward ----------------------------------------------------------- */

/* r = relu(h W1^T + b1) (saved), f = r W2^T + b2.
 * h (n, d); W1 (dff, d), b1 (dff); W2 (d, dff), b2 (d); r (n, dff); f (n, d) overwritten. */
void R(ext_ffn_forward)(const REAL *h, const REAL *W1, const REAL *b1, const REAL *W2,
                        const REAL *b2, int64_t n, int d, int dff, REAL *r, REAL *f);
/* dh += gradient wrt h (accumulated; must not alias df); dW1, db1, dW2, db2 accumulated.
 * df (n, d); dr (n, dff) scratch. */
void R(ext_ffn_backward)(const REAL *h, const REAL *r, const REAL *W1, const REAL *W2,
                         const REAL *df, int64_t n, int d, int dff, REAL *dh, REAL *dW1,
                         REAL *db1, REAL *dW2, REAL *db2, REAL *dr);

/* ---- interest attention + weighted sum ---------------------------------------------------- */

/* t = tanh(x W1^T + b1) (saved); e = t W2^T + b2 (saved, unmasked);
 * alpha[b,k,:] = softmax over valid l of e[b,:,k] (hist[b,l] > 0; none valid: all 0);
 * V[b,k,:] = sum_l alpha[b,k,l] x[b,l,:].
 * x (B, L, d); hist (B, L); W1 (a, d), b1 (a); W2 (K, a), b2 (K);
 * t (B, L, a), e (B, L, K), alpha (B, K, L), V (B, K, d) overwritten. */
void R(ext_interest_forward)(const REAL *x, const int32_t *hist, const REAL *W1, const REAL *b1,
                             const REAL *W2, const REAL *b2, int B, int L, int d, int a, int K,
                             REAL *t, REAL *e, REAL *alpha, REAL *V);
/* dx (B, L, d) overwritten; dW1, db1, dW2, db2 accumulated. dV (B, K, d).
 * Scratch: de (B, L, K), dt (B, L, a). */
void R(ext_interest_backward)(const REAL *x, const REAL *t, const REAL *alpha, const REAL *W1,
                              const REAL *W2, const REAL *dV, int B, int L, int d, int a, int K,
                              REAL *dx, REAL *dW1, REAL *db1, REAL *dW2, REAL *db2, REAL *de,
                              REAL *dt);

/* ---- the whole extractor ------------------------------------------------------------------ */

/* Saved activations and backward scratch for up to max_B x max_L (n = B * L rows used, packed
 * with row stride L). Transformer fields are NULL without add_trm, and then x == x0. */
typedef struct {
    int max_B, max_L, d, a, K, add_pos, add_trm, dff;
    int B, L;          /* shape of the last forward */
    REAL *x0;          /* (B, L, d) embeddings (+ positions) */
    REAL *q, *k, *v;   /* (B, L, d) */
    REAL *att;         /* (B, L, L) attention weights */
    REAL *ln1_xhat;    /* (B, L, d) */
    REAL *ln1_rstd;    /* (B, L) */
    REAL *h1;          /* (B, L, d) LN1 output */
    REAL *ffn_r;       /* (B, L, dff) relu(W_ff1 h1 + b_ff1) */
    REAL *ln2_xhat;    /* (B, L, d) */
    REAL *ln2_rstd;    /* (B, L) */
    REAL *x;           /* (B, L, d) sequence output fed to the interest attention */
    REAL *t;           /* (B, L, a) tanh(W1 x + b1) */
    REAL *e;           /* (B, L, K) interest scores (unmasked) */
    REAL *alpha;       /* (B, K, L) interest attention */
    REAL *tmp;         /* (B, L, d) forward scratch (ctx, f) */
    REAL *g0, *g1, *g2, *g3; /* (B, L, d) backward scratch */
    REAL *gs;          /* (B, L, L) backward scratch */
    REAL *ge;          /* (B, L, K) backward scratch */
    REAL *gt;          /* (B, L, a) backward scratch */
    REAL *block_;      /* the one allocation everything above lives in (act_carve) */
} R(extractor_cache_t);

/* The fields come from the activation table (model.h, group ACT_EXTRACTOR), carved from one
 * block; extractor_cache_slots binds each table entry to its field. */
void R(extractor_cache_alloc)(R(extractor_cache_t) *c, const model_layout_t *lay, int max_B,
                              int max_L);
void R(extractor_cache_slots)(R(extractor_cache_t) *c, R(act_slot_t) *slot);
void R(extractor_cache_free)(R(extractor_cache_t) *c);

/* V (B, K, d) = the interests of hist (B, L) (right-padded with 0) and pos (B, L) (position
 * index, 0 for padding; may be NULL without add_pos). Fatal if B > max_B, L > max_L, or an id
 * or position is out of its table's range. Saves activations in c. */
void R(extractor_forward)(const model_layout_t *lay, const REAL *params, const int32_t *hist,
                          const int32_t *pos, int B, int L, R(extractor_cache_t) *c, REAL *V);
/* Given dV (B, K, d), ADD the gradients of every extractor tensor into grads (flat buffer,
 * model.h layout). Needs the cache of the forward on the same inputs and params. */
void R(extractor_backward)(const model_layout_t *lay, const REAL *params, const int32_t *hist,
                           const int32_t *pos, int B, int L, R(extractor_cache_t) *c,
                           const REAL *dV, REAL *grads);
