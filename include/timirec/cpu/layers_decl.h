/* layers: declarations for one precision (no include guard: cpu_ops.h includes this file once
 * per precision with REAL and R(name) defined).
 *
 * The generic layers that both stages compose (the extractor of extractor_decl.h, the
 * predictor of predictor_decl.h): embedding gather and scatter-add, Linear (PyTorch layout),
 * column sums, residual + LayerNorm. Each is the single reference implementation of its op
 * (the CUDA kernels are tested against them). n is the number of rows. Backward functions ADD
 * into parameter gradients; input gradients are overwritten or accumulated as documented.
 * Every sum has a fixed order (no atomics), so results do not depend on the OpenMP thread
 * count, given a deterministic gemm. */

/* ---- embedding gather (+ position) -------------------------------------------------------- */

/* x0[r,:] = E[hist[r],:] + (P ? P[pos[r],:] : 0) for r < n.
 * E (rows_E, d), P (rows_P, d) or NULL, hist (n), pos (n) (ignored when P is NULL), x0 (n, d).
 * Ids are not range-checked here (extractor_forward does). */
void R(layer_embed_forward)(const REAL *E, const REAL *P, const int32_t *hist, const int32_t *pos,
                            int64_t n, int d, REAL *x0);
/* Scatter-add: dE[hist[r],:] += dx0[r,:], dP[pos[r],:] += dx0[r,:] (dP NULL: skipped), rows in
 * ascending r for every element (deterministic). dx0 (n, d). Padding rows are not skipped:
 * the reference's tables have no padding_idx (their dx0 is exactly zero in the extractor). */
void R(layer_embed_backward)(const int32_t *hist, const int32_t *pos, int64_t n, int d,
                             const REAL *dx0, REAL *dE, REAL *dP);

/* ---- Linear (PyTorch layout: W [out, in]) ------------------------------------------------- */

/* y = x W^T + b.  x (n, in), W (out, in), b (out) or NULL, y (n, out) overwritten. */
void R(layer_linear_forward)(const REAL *x, const REAL *W, const REAL *b, int64_t n, int in,
                             int out, REAL *y);
/* dW += dy^T x; db += column sums of dy (rows in ascending order; db NULL: skipped);
 * dx += dy W (dx NULL: skipped). x (n, in), W (out, in), dy (n, out), dx (n, in). */
void R(layer_linear_backward)(const REAL *x, const REAL *W, const REAL *dy, int64_t n, int in,
                              int out, REAL *dx, REAL *dW, REAL *db);

/* ---- residual + LayerNorm (+ optional row mask) ------------------------------------------- */

/* z = a + b (b NULL: z = a); xhat = (z - mean) * rstd, rstd = 1 / sqrt(biased var + 1e-5);
 * y = (gamma * xhat + beta) * (rowmask ? (rowmask[r] > 0) : 1).
 * a, b (n, d); gamma, beta (d); y, xhat (n, d) and rstd (n) overwritten (xhat, rstd saved
 * for the backward; statistics are computed for masked rows too). */
void R(layer_add_layernorm_forward)(const REAL *a, const REAL *b, const REAL *gamma,
                                    const REAL *beta, const int32_t *rowmask, int64_t n, int d,
                                    REAL *y, REAL *xhat, REAL *rstd);
/* dz (n, d) overwritten with dL/dz (the gradient of both residual inputs a and b); masked
 * rows get 0 and contribute nothing. dgamma += sum_r dy' xhat, dbeta += sum_r dy' (dy' = the
 * row-masked dy; rows in ascending order). */
void R(layer_add_layernorm_backward)(const REAL *dy, const REAL *xhat, const REAL *rstd,
                                     const REAL *gamma, const int32_t *rowmask, int64_t n, int d,
                                     REAL *dz, REAL *dgamma, REAL *dbeta);

/* ---- sums of rows ------------------------------------------------------------------------- */

/* table[ids[r],:] += src[r,:] for r < n in ascending r for every element (deterministic;
 * rows of d). ids (n), src (n, d); table rows indexed by ids are not range-checked. */
void R(layer_scatter_add)(const int32_t *ids, int64_t n, int d, const REAL *src, REAL *table);
/* db[c] += sum_r dy[r * ld + c] for c < cols, rows in ascending order. */
void R(layer_colsum_add_ld)(const REAL *dy, int64_t n, int cols, int64_t ld, REAL *db);
/* db[c] += sum_r dy[r, c], rows in ascending order. dy (n, cols). */
void R(layer_colsum_add)(const REAL *dy, int64_t n, int cols, REAL *db);
