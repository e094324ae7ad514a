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

/* Whether the last step wrote entry `scan` of the table in full (enum act_scan). */
static int nc_written(int scan, const model_config_t *cfg, const model_ws_t_f *ws) {
    const int ft = cfg->stage == STAGE_FINETUNE;
    const predictor_cache_t_f *p = &ws->pred;
    switch (scan) {
    case SCAN_YES: return 1;
    case SCAN_FINETUNE: return ft;
    case SCAN_TARGET: return ft && !ws->freeze_target;
    case SCAN_ROWS: return ft && p->U == 0;
    case SCAN_TABLE: return ft && p->U > 0;
    case SCAN_PROJ: return ft && p->n_proj > 1;
    case SCAN_GRU_BWD: return ft && p->T > 0;
    case SCAN_GRU_BWD_ROWS: return ft && p->T > 0 && p->U == 0;
    case SCAN_GRU_BWD_TABLE: return ft && p->T > 0 && p->U > 0;
    default: return 0;
    }
}

int numcheck_workspace_arrays(const model_layout_t *lay, model_ws_t_f *ws, int C,
                              numcheck_array_t *out, int max_out) {
    const int64_t B = ws->ext.B, L = ws->ext.L;
    if (B < 1 || L < 1) return 0; /* no forward yet */
    /* The table at the last step's shape (its packed and distinct GRU rows too), and where
     * each entry lives in this workspace. */
    act_table_t t;
    model_acts_build(lay, B, L, C, &t);
    if (lay->cfg.stage == STAGE_FINETUNE) model_acts_set_rows(&t, ws->pred.T, ws->pred.U);
    act_slot_t_f slot[A_COUNT] = {{0}};
    model_ws_slots_f(ws, slot);
    int n = 0;
    for (int id = 0; id < A_COUNT && n < max_out; id++) {
        const act_desc_t *a = &model_acts[id];
        if (!t.present[id] || !(a->backends & ACT_CPU) || a->type != ACT_F32 ||
            !nc_written(a->scan, &lay->cfg, ws) || t.count[id] == 0)
            continue;
        numcheck_array_t *e = &out[n++];
        e->name = a->name;
        model_act_shape(id, e->shape, sizeof e->shape);
        e->data = *slot[a->alias >= 0 ? a->alias : id].f;
        e->count = (int64_t)t.count[id];
        for (int k = 0; k < 3; k++) e->dims[k] = a->dims[k] == AD_NONE ? 0 : t.sym[a->dims[k]];
    }
    return n;
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
