/* Finiteness checks of parameters, gradients and the model workspace (numcheck.h). */
#include "timirec/numcheck.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Elements per block of the scan: the block's check has no branch (integer compares, OR), so
 * it vectorises without -ffast-math; only a block that has a bad element is scanned again. */
#define NC_BLOCK 4096

int64_t numcheck_first_nonfinite(const float *x, int64_t n) {
    if (n <= 0) return -1;
    const int64_t n_blocks = (n + NC_BLOCK - 1) / NC_BLOCK;
    int64_t first = INT64_MAX;
#pragma omp parallel for schedule(static) reduction(min : first) if (n > 262144)
    for (int64_t blk = 0; blk < n_blocks; blk++) {
        const int64_t lo = blk * NC_BLOCK, hi = lo + NC_BLOCK < n ? lo + NC_BLOCK : n;
        uint32_t bad = 0;
        for (int64_t i = lo; i < hi; i++) {
            uint32_t u;
            memcpy(&u, x + i, sizeof u);
            bad |= (u & 0x7f800000u) == 0x7f800000u; /* exponent all ones: Inf or NaN */
        }
        if (bad && blk < first) first = blk;
    }
    if (first == INT64_MAX) return -1;
    for (int64_t i = first * NC_BLOCK; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1; /* not reached */
}

int numcheck_tensors(const model_layout_t *lay, const float *buf, char *out, size_t outlen) {
    for (int t = 0; t < lay->n_tensors; t++) {
        const param_t *p = &lay->t[t];
        int64_t i = numcheck_first_nonfinite(buf + p->offset, p->size);
        if (i < 0) continue;
        double v = buf[p->offset + i];
        if (p->cols)
            snprintf(out, outlen, "%s[%lld, %lld] = %g", p->name, (long long)(i / p->cols),
                     (long long)(i % p->cols), v);
        else snprintf(out, outlen, "%s[%lld] = %g", p->name, (long long)i, v);
        return 1;
    }
    return 0;
}

typedef struct {
    numcheck_array_t *a;
    int n, max;
} nc_list_t;

static void nc_add(nc_list_t *l, const char *name, const char *shape, float *data, int64_t d0,
                   int64_t d1, int64_t d2) {
    if (!data || l->n >= l->max) return;
    int64_t count = d0 * (d1 ? d1 : 1) * (d2 ? d2 : 1);
    if (count <= 0) return;
    l->a[l->n++] = (numcheck_array_t){name, shape, data, count, {d0, d1, d2}};
}

int numcheck_workspace_arrays(const model_layout_t *lay, model_ws_t_f *ws, int C,
                              numcheck_array_t *out, int max_out) {
    nc_list_t l = {out, 0, max_out};
    const model_config_t *cfg = &lay->cfg;
    extractor_cache_t_f *x = &ws->ext;
    const int64_t B = x->B, L = x->L, d = x->d, a = x->a, K = x->K;
    if (B < 1 || L < 1) return 0; /* no forward yet */
    const int finetune = cfg->stage == STAGE_FINETUNE;
    /* Forward, in the order the model computes them. */
    nc_add(&l, "extractor.x0 = E[hist] + P[pos]", "(B, L, d)", x->x0, B, L, d);
    if (x->add_trm) {
        nc_add(&l, "extractor.q", "(B, L, d)", x->q, B, L, d);
        nc_add(&l, "extractor.k", "(B, L, d)", x->k, B, L, d);
        nc_add(&l, "extractor.v", "(B, L, d)", x->v, B, L, d);
        nc_add(&l, "extractor.att (attention weights)", "(B, L, L)", x->att, B, L, L);
        nc_add(&l, "extractor.ln1_rstd", "(B, L)", x->ln1_rstd, B, L, 0);
        nc_add(&l, "extractor.ln1_xhat", "(B, L, d)", x->ln1_xhat, B, L, d);
        nc_add(&l, "extractor.h1 (LayerNorm 1 output)", "(B, L, d)", x->h1, B, L, d);
        nc_add(&l, "extractor.ffn_r = relu(h1 W_ff1^T + b_ff1)", "(B, L, dff)", x->ffn_r, B, L,
               x->dff);
        nc_add(&l, "extractor.ln2_rstd", "(B, L)", x->ln2_rstd, B, L, 0);
        nc_add(&l, "extractor.ln2_xhat", "(B, L, d)", x->ln2_xhat, B, L, d);
        nc_add(&l, "extractor.x (transformer output)", "(B, L, d)", x->x, B, L, d);
    }
    nc_add(&l, "extractor.t = tanh(x W1^T + b1)", "(B, L, a)", x->t, B, L, a);
    nc_add(&l, "extractor.e (interest scores)", "(B, L, K)", x->e, B, L, K);
    nc_add(&l, "extractor.alpha (interest attention)", "(B, K, L)", x->alpha, B, K, L);
    nc_add(&l, "V (interests)", "(B, K, d)", ws->V, B, K, d);
    if (finetune) {
        predictor_cache_t_f *p = &ws->pred;
        const int64_t T = p->T;
        if (p->U > 0) /* the input projections ran over the batch's distinct E2 rows */
            nc_add(&l, "predictor.x (distinct E2 rows)", "(U, d)", p->x, p->U, d, 0);
        else
            nc_add(&l, "predictor.x (packed GRU inputs)", "(T, d)", p->x, T, d, 0);
        nc_add(&l, "predictor.gates (r, z, n)", "(T, 3d)", p->gates, T, 3 * d, 0);
        nc_add(&l, "predictor.ghn", "(T, d)", p->ghn, T, d, 0);
        nc_add(&l, "predictor.h (GRU states)", "(T, d)", p->h, T, d, 0);
        nc_add(&l, "predictor.g (last GRU state)", "(B, d)", p->g, B, d, 0);
        if (p->n_proj > 1)
            nc_add(&l, "predictor.acts (projection hidden layers)", "(n_layers-1, B, d)",
                   p->acts, p->n_proj - 1, B, d);
        nc_add(&l, "pred_intent", "(B, K)", ws->pred_intent, B, K, 0);
        nc_add(&l, "w = softmax(pred_intent)", "(B, K)", ws->w, B, K, 0);
        nc_add(&l, "u (user vector)", "(B, d)", ws->u, B, d, 0);
        if (!ws->freeze_target)
            nc_add(&l, "target_intent", "(B, K)", ws->target_intent, B, K, 0);
    }
    nc_add(&l, "scores", "(B, C)", ws->scores, B, C, 0);
    /* Backward: gradients with respect to the intermediates that the step writes in full. */
    nc_add(&l, "dscores", "(B, C)", ws->dscores, B, C, 0);
    if (finetune) {
        predictor_cache_t_f *p = &ws->pred;
        nc_add(&l, "du", "(B, d)", ws->du, B, d, 0);
        nc_add(&l, "dV", "(B, K, d)", ws->dV, B, K, d);
        nc_add(&l, "d_pred_intent", "(B, K)", ws->d_pred_intent, B, K, 0);
        nc_add(&l, "predictor.dg", "(B, d)", p->dg, B, d, 0);
        if (p->T > 0) { /* the GRU backward does not run on a batch without history */
            nc_add(&l, "predictor.dgi", "(T, 3d)", p->dgi, p->T, 3 * d, 0);
            nc_add(&l, "predictor.dgh (d_hn)", "(T, d)", p->dgh, p->T, d, 0);
            if (p->U > 0) {
                nc_add(&l, "predictor.tab (dgi summed per distinct E2 row)", "(U, 3d)", p->tab,
                       p->U, 3 * d, 0);
                nc_add(&l, "predictor.dx (distinct E2 rows)", "(U, d)", p->dx, p->U, d, 0);
            } else {
                nc_add(&l, "predictor.dx", "(T, d)", p->dx, p->T, d, 0);
            }
        }
    } else {
        nc_add(&l, "dV", "(B, K, d)", ws->dV, B, K, d);
    }
    return l.n;
}

int numcheck_workspace(const model_layout_t *lay, model_ws_t_f *ws, int C, char *out,
                       size_t outlen) {
    numcheck_array_t arr[NUMCHECK_MAX_ARRAYS];
    int n = numcheck_workspace_arrays(lay, ws, C, arr, NUMCHECK_MAX_ARRAYS);
    for (int i = 0; i < n; i++) {
        int64_t k = numcheck_first_nonfinite(arr[i].data, arr[i].count);
        if (k < 0) continue;
        /* Element index as coordinates of the shape. */
        const int64_t *dm = arr[i].dims;
        int64_t d1 = dm[1] ? dm[1] : 1, d2 = dm[2] ? dm[2] : 1;
        char at[96];
        if (dm[2]) snprintf(at, sizeof at, "[%lld, %lld, %lld]", (long long)(k / (d1 * d2)),
                            (long long)(k / d2 % d1), (long long)(k % d2));
        else if (dm[1]) snprintf(at, sizeof at, "[%lld, %lld]", (long long)(k / d1), (long long)(k % d1));
        else snprintf(at, sizeof at, "[%lld]", (long long)k);
        snprintf(out, outlen, "%s %s%s = %g", arr[i].name, arr[i].shape, at, (double)arr[i].data[k]);
        return 1;
    }
    return 0;
}
