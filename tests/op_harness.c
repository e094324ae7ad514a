/* The harness of the op table (tests/op_table.h): grad, parity and perf modes over every entry
 * of op_table[], generic in the entry (tensors are allocated, filled, poisoned, uploaded and
 * compared from their op_tensor_t description). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "../bench/bench_util.h"
#include "gradcheck.h"
#include "gpu_test_util.h"
#include "op_table.h"
#include "test_util.h"
#include "timirec/common.h"
#include "timirec/cpu_ops.h"

/* Absolute tolerance of the finite differences for a loss that sums n_terms products of size
 * ~1: round-off in one evaluation is ~1e-16 n_terms, and in (up - down) / 2h with h = 1e-6
 * ~1e-10 n_terms. */
#define GC_ATOL(n_terms) (1e-10 * (double)(n_terms))

/* ---- shapes and tensors -------------------------------------------------------------------- */

static int64_t dim_size(const char *tok, size_t len, const op_shape_t *s) {
    if (len == 1) switch (tok[0]) {
        case 'B': return s->B;
        case 'L': return s->L;
        case 'd': return s->d;
        case 'a': return s->a;
        case 'K': return s->K;
        case 'C': return s->C;
        case 'N': return s->N;
        case 'f': return s->f;
        case 'n': return (int64_t)s->B * s->L;
        case 'P': return (int64_t)s->L + 1;
        case 'T': return s->T;
        case 'W': return s->W;
        default: break;
        }
    if (len == 6 && strncmp(tok, "layers", 6) == 0) return s->layers;
    if (len == 6 && strncmp(tok, "hidden", 6) == 0) return s->layers > 1 ? s->layers - 1 : 0;
    if (len == 5 && strncmp(tok, "steps", 5) == 0) return s->steps;
    if (len == 2 && strncmp(tok, "W4", 2) == 0) return (s->W + 3) / 4 * 4; /* float4 stride */
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (tok[i] < '0' || tok[i] > '9') tmr_fatal("op_table: bad dim '%.*s'", (int)len, tok);
        v = 10 * v + (tok[i] - '0');
    }
    return v;
}

int64_t op_numel(const char *dims, const op_shape_t *s) {
    int64_t n = 1;
    for (const char *p = dims; *p;) {
        const size_t len = strcspn(p, ",");
        n *= dim_size(p, len, s);
        p += len + (p[len] == ',');
    }
    return n;
}

/* The last dim (a table's row width, a weight's fan-in). */
static int64_t last_dim(const char *dims, const op_shape_t *s) {
    const char *p = strrchr(dims, ',');
    p = p ? p + 1 : dims;
    return dim_size(p, strlen(p), s);
}

static int find_tensor(const op_t *op, const char *name) {
    for (int i = 0; i < op->nt; i++)
        if (strcmp(op->t[i].name, name) == 0) return i;
    tmr_fatal("op_table: %s has no tensor %s", op->name, name);
    return -1;
}

/* only: NULL, or a comma-separated list of parts of op names. */
static int wanted(const char *only, const char *name) {
    if (!only || !*only) return 1;
    char part[64];
    for (const char *p = only; *p;) {
        const size_t l = strcspn(p, ",");
        snprintf(part, sizeof part, "%.*s", (int)(l < sizeof part ? l : sizeof part - 1), p);
        if (l && strstr(name, part)) return 1;
        p += l + (p[l] == ',');
    }
    return 0;
}

/* The shape's nonzero sizes. */
static void shape_str(const op_shape_t *s, char *out, size_t n) {
    const char *name[] = {"B", "L", "d", "a", "K", "C", "N", "f"};
    const int v[] = {s->B, s->L, s->d, s->a, s->K, s->C, s->N, s->f};
    size_t len = 0;
    out[0] = 0;
    for (int i = 0; i < 8 && len < n; i++)
        if (v[i]) len += (size_t)snprintf(out + len, n - len, "%s%s%d", len ? " " : "", name[i], v[i]);
    if (s->T > 0 && len < n) len += (size_t)snprintf(out + len, n - len, " T%lld", (long long)s->T);
    if (s->temp > 0 && len < n) len += (size_t)snprintf(out + len, n - len, " temp %.1f", s->temp);
    if (s->layers > 0 && len < n) len += (size_t)snprintf(out + len, n - len, " layers %d", s->layers);
    if (s->p > 0 && len < n) len += (size_t)snprintf(out + len, n - len, " p %.2f", s->p);
    if (s->train && len < n) len += (size_t)snprintf(out + len, n - len, " training");
    if (s->steps > 0 && len < n) len += (size_t)snprintf(out + len, n - len, " steps %d", s->steps);
    if (s->runs > 0 && len < n) snprintf(out + len, n - len, " one id");
}

/* Host inputs of one case, the same in every mode: float values (T_IN, T_GRAD_ADD start) and
 * ids. tag: distinct per op and shape. */
typedef struct {
    op_shape_t s;               /* the shape, with T */
    int64_t sz[OP_MAX_TENSORS];
    float *f[OP_MAX_TENSORS];   /* T_IN, T_GRAD_ADD: the values; else NULL */
    int32_t *i[OP_MAX_TENSORS]; /* T_IDS */
    int n_steps;                /* the lengths' GRU packing */
    int32_t *batch_sizes;       /* (L) */
    int64_t *step_off;          /* (L + 1) */
} inputs_t;

/* The histories (B, L) and their lengths (B) as s->lens says; the packing of the lengths. */
static void histories(inputs_t *in, uint32_t tag, int32_t *hist, int32_t *pos) {
    op_shape_t *s = &in->s;
    const int B = s->B, L = s->L;
    int32_t *length = tmr_malloc((size_t)(B > 0 ? B : 1) * sizeof(int32_t));
    int32_t *perm = tmr_malloc((size_t)(B > 0 ? B : 1) * sizeof(int32_t));
    in->batch_sizes = tmr_calloc((size_t)L + 1, sizeof(int32_t));
    in->step_off = tmr_calloc((size_t)L + 1, sizeof(int64_t));
    gt_histories(B, L, s->N > 1 ? s->N : 2, tag, 1, hist, pos, length);
    for (int b = 0; b < B; b++) {
        if (s->lens == OP_LEN_MIXED) continue;
        length[b] = s->lens == OP_LEN_EQUAL ? L : b == B / 2 ? L : 1 + b % (L < 3 ? L : 3);
        for (int l = 0; l < L; l++) { /* the histories follow the lengths */
            const int64_t r = (int64_t)b * L + l;
            hist[r] = l < length[b] ? 1 + (int32_t)((r * 7919) % (s->N > 1 ? s->N - 1 : 1)) : 0;
            pos[r] = l < length[b] ? length[b] - l : 0;
        }
    }
    in->n_steps = gru_pack_f(length, B, L, perm, in->batch_sizes, in->step_off);
    s->T = in->step_off[in->n_steps];
    free(length), free(perm);
}

static void inputs_make(const op_t *op, const op_shape_t *shape, uint32_t tag, inputs_t *in) {
    memset(in, 0, sizeof *in);
    in->s = *shape;
    if (op->layout) in->s.W = op->layout(&in->s)->total;
    const op_shape_t *s = &in->s;
    const int64_t n = (int64_t)s->B * s->L;
    int32_t *hist = tmr_malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    int32_t *pos = tmr_malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    if (s->L > 0) histories(in, tag, hist, pos);
    for (int k = 0; k < op->nt; k++) {
        const op_tensor_t *t = &op->t[k];
        const int64_t m = in->sz[k] = op_numel(t->dims, s);
        if (t->kind == T_IN || t->kind == T_GRAD_ADD) {
            float lo = t->lo, hi = t->hi;
            if (lo == 0 && hi == 0) lo = -1, hi = 1;
            if (t->flags & OPT_FANIN) {
                const float sc = 1.0f / sqrtf((float)last_dim(t->dims, s));
                lo *= sc, hi *= sc;
            }
            if (t->flags & OPT_INV_SQRT_D) {
                const float sc = 1.0f / sqrtf((float)s->d);
                lo *= sc, hi *= sc;
            }
            in->f[k] = gt_rand(m, tag + 1 + (uint32_t)k, lo, hi);
        } else if (t->kind == T_IDS) {
            in->i[k] = tmr_malloc((size_t)(m > 0 ? m : 1) * sizeof(int32_t));
            if (t->fill == F_CAND) {
                const uint32_t range = (uint32_t)(s->N < 40 ? s->N : 40);
                for (int64_t j = 0; j < m; j++)
                    in->i[k][j] = (int32_t)(rng_u32(3, RNG_TEST, tag + 1 + (uint32_t)k, (uint64_t)j, 0) % range);
                continue;
            }
            if (t->fill == F_OP) {
                op->fill_ids(s, tag + 1 + (uint32_t)k, in->i[k]);
                continue;
            }
            if (m != n) tmr_fatal("op_table: %s %s: histories must be (B, L)", op->name, t->name);
            memcpy(in->i[k], t->fill == F_POS ? pos : hist, (size_t)n * sizeof(int32_t));
        }
    }
    free(hist), free(pos);
}

static void inputs_free(const op_t *op, inputs_t *in) {
    for (int k = 0; k < op->nt; k++) free(in->f[k]), free(in->i[k]);
    free(in->batch_sizes), free(in->step_off);
}

/* A host case in float or double from the inputs; outputs and scratch NaN. */
static void host_case(const op_t *op, const inputs_t *in, int dbl, op_case_t *c) {
    c->s = in->s;
    c->n_steps = in->n_steps;
    c->batch_sizes = in->batch_sizes;
    c->step_off = in->step_off;
    for (int k = 0; k < op->nt; k++) {
        const int64_t m = in->sz[k] > 0 ? in->sz[k] : 1;
        if (op->t[k].kind == T_IDS) {
            c->t[k] = tmr_malloc((size_t)m * sizeof(int32_t));
            memcpy(c->t[k], in->i[k], (size_t)in->sz[k] * sizeof(int32_t));
        } else if (dbl) {
            double *x = tmr_malloc((size_t)m * sizeof(double));
            for (int64_t j = 0; j < in->sz[k]; j++) x[j] = in->f[k] ? in->f[k][j] : NAN;
            c->t[k] = x;
        } else {
            float *x = tmr_malloc((size_t)m * sizeof(float));
            for (int64_t j = 0; j < in->sz[k]; j++) x[j] = in->f[k] ? in->f[k][j] : NAN;
            c->t[k] = x;
        }
    }
}

static void case_free(const op_t *op, op_case_t *c) {
    for (int k = 0; k < op->nt; k++) free(c->t[k]);
}

/* ---- grad mode ------------------------------------------------------------------------------ */

typedef struct {
    const op_t *op;
    op_case_t *c;
} grad_ctx_t;

/* sum over outputs with an upstream gradient of <out, dout>. */
static double grad_loss(void *vctx, const double *params) {
    (void)params; /* the perturbed tensor is one of c's buffers */
    grad_ctx_t *x = vctx;
    x->op->fwd_d(x->c);
    double sum = 0;
    for (int k = 0; k < x->op->nt; k++) {
        const op_tensor_t *t = &x->op->t[k];
        if (t->kind != T_OUT || !t->grad) continue;
        const double *o = x->c->t[k], *w = x->c->t[find_tensor(x->op, t->grad)];
        const int64_t m = op_numel(t->dims, &x->c->s);
        for (int64_t j = 0; j < m; j++) sum += o[j] * w[j];
    }
    return sum;
}

static double max_abs_d(const double *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) tu_max_err(&m, fabs(x[i]));
    return m;
}

/* A gradient that is zero in exact arithmetic: the analytic one must be round-off (<= 1e-13 of
 * the largest gradient) and so must every central difference (<= 1e-7). */
static int check_zero_grad(const char *name, grad_ctx_t *x, double *p, int64_t size,
                           const double *analytic, double gscale) {
    double ga = max_abs_d(analytic, size), gn = 0, h = 1e-6;
    for (int64_t i = 0; i < size; i++) {
        const double keep = p[i];
        p[i] = keep + h;
        const double up = grad_loss(x, NULL);
        p[i] = keep - h;
        const double down = grad_loss(x, NULL);
        p[i] = keep;
        tu_max_err(&gn, fabs((up - down) / (2 * h)));
    }
    const int bad = !(ga <= 1e-13 * gscale) || !(gn <= 1e-7);
    printf("  %-58s zero by softmax shift invariance: |analytic| %.1e, |numeric| %.1e%s\n", name,
           ga, gn, bad ? "  FAIL" : "");
    return bad;
}

/* Outputs marked OPT_EMPTY_ZERO: the last batch row's block (an empty history) exactly 0. */
static void check_empty_rows(const op_t *op, const op_case_t *c, int dbl, const char *sh) {
    if (c->s.B < 3) return;
    for (int k = 0; k < op->nt; k++) {
        if (!(op->t[k].flags & OPT_EMPTY_ZERO)) continue;
        const int64_t m = op_numel(op->t[k].dims, &c->s), per = m / c->s.B;
        double worst = 0;
        for (int64_t j = m - per; j < m; j++)
            tu_max_err(&worst, fabs(dbl ? ((const double *)c->t[k])[j] : ((const float *)c->t[k])[j]));
        CHECK(worst == 0, "%s %s [%s]: the empty history's row is not 0 (%g)", op->name,
              op->t[k].name, sh, worst);
    }
}

static void grad_case(const op_t *op, const op_shape_t *shape, uint32_t tag) {
    char sh[128], label[160];
    inputs_t in;
    inputs_make(op, shape, tag, &in);
    const op_shape_t *s = &in.s;
    shape_str(s, sh, sizeof sh);
    printf("grad %s [%s]\n", op->name, sh);
    op_case_t c;
    host_case(op, &in, 1, &c);
    op->fwd_d(&c);
    if (op->bwd_d) op->bwd_d(&c);
    /* Inputs as they were (the GRU's backward uses dh as its running gradient). */
    for (int k = 0; k < op->nt; k++)
        if (op->t[k].kind == T_IN)
            for (int64_t j = 0; j < in.sz[k]; j++) ((double *)c.t[k])[j] = in.f[k][j];
    check_empty_rows(op, &c, 1, sh);
    /* The analytic gradients: what the backward wrote, less the start of accumulated ones. */
    double *an[OP_MAX_TENSORS] = {0};
    double gscale = 0;
    int64_t n_terms = 0;
    for (int k = 0; k < op->nt; k++) {
        const op_tensor_t *t = &op->t[k];
        if (t->kind == T_OUT && t->grad) n_terms += in.sz[k];
        if (t->kind != T_OUT && t->kind != T_GRAD_ADD) continue;
        an[k] = tmr_malloc((size_t)(in.sz[k] > 0 ? in.sz[k] : 1) * sizeof(double));
        const double *g = c.t[k];
        for (int64_t j = 0; j < in.sz[k]; j++)
            an[k][j] = g[j] - (t->kind == T_GRAD_ADD ? (double)in.f[k][j] : 0.0);
        if (t->kind == T_GRAD_ADD) tu_max_err(&gscale, max_abs_d(an[k], in.sz[k]));
    }
    grad_ctx_t x = {op, &c};
    gc_opts_t o = gc_default_opts();
    o.atol = GC_ATOL(n_terms);
    int bad = 0;
    for (int k = 0; k < op->nt; k++) {
        const op_tensor_t *t = &op->t[k];
        if (t->kind != T_IN || !t->grad) continue;
        const int g = find_tensor(op, t->grad);
        snprintf(label, sizeof label, "%s %s (%s)", op->name, t->name, t->dims);
        if (t->flags & OPT_ZERO_GRAD) {
            bad += check_zero_grad(label, &x, c.t[k], in.sz[k], an[g], gscale);
            continue;
        }
        CHECK(max_abs_d(an[g], in.sz[k]) > 1e-3, "%s: gradient all tiny", label);
        bad += gc_check(label, grad_loss, &x, c.t[k], 0, in.sz[k], an[g], &o);
    }
    CHECK(bad == 0, "%s [%s]: %d gradient elements wrong", op->name, sh, bad);
    for (int k = 0; k < op->nt; k++) free(an[k]);
    case_free(op, &c);
    inputs_free(op, &in);
}

int op_run_grad(const char *only) {
    const int before = tu_failures, checks = tu_checks;
    for (int i = 0; i < op_count; i++) {
        const op_t *op = &op_table[i];
        if (!wanted(only, op->name) || !op->fwd_d) continue;
        op_shape_t sh[OP_MAX_SHAPES];
        const int k = op->shapes(OPM_GRAD, sh);
        for (int j = 0; j < k; j++) grad_case(op, &sh[j], 1000u * (uint32_t)(i + 1) + 50u * (uint32_t)j);
    }
    printf("grad: %d checks, %d failed\n", tu_checks - checks, tu_failures - before);
    return tu_failures - before;
}

/* ---- parity mode ---------------------------------------------------------------------------- */

#ifdef TIMIREC_CUDA
/* The step offsets of the packing on the device (the GRU launchers read them there). */
static const int64_t *device_step_off(const inputs_t *in) {
    if (!in->step_off) return NULL; /* no histories */
    const size_t bytes = ((size_t)in->s.L + 1) * sizeof(int64_t);
    int64_t *d = gpu_malloc(bytes);
    gpu_to_device(d, in->step_off, bytes);
    return d;
}

/* A flat parameter buffer, tensor by tensor (a wrong flag or offset stands out in one). */
static void compare_per_param(const op_t *op, const op_shape_t *s, const char *what,
                              const float *dev, const float *cpu, double tol) {
    const model_layout_t *lay = op->layout(s);
    float *h = tmr_malloc((size_t)(lay->total > 0 ? lay->total : 1) * sizeof(float));
    gpu_to_host(h, dev, (size_t)lay->total * sizeof(float));
    char label[240];
    for (int t = 0; t < lay->n_tensors; t++) {
        const param_t *pt = &lay->t[t];
        snprintf(label, sizeof label, "%.100s: %.100s%s", what, pt->name, pt->decay ? " (decay)" : "");
        gt_compare_host(label, h + pt->offset, cpu + pt->offset, pt->size, tol);
    }
    free(h);
}

static void parity_case(gpu_ctx_t *g, const op_t *op, const op_shape_t *shape, uint32_t tag) {
    char sh[128], label[200];
    inputs_t in;
    inputs_make(op, shape, tag, &in);
    const op_shape_t *s = &in.s;
    shape_str(s, sh, sizeof sh);
    printf("parity %s [%s]\n", op->name, sh);
    op_case_t c, h;
    host_case(op, &in, 0, &c);
    op_case_t dc = c;
    dc.step_off_dev = device_step_off(&in);
    for (int k = 0; k < op->nt; k++) {
        const op_tensor_t *t = &op->t[k];
        const size_t bytes = (size_t)in.sz[k] * (t->kind == T_IDS ? sizeof(int32_t) : sizeof(float));
        dc.t[k] = gpu_malloc(bytes);
        if (t->kind == T_IDS || t->kind == T_IN || t->kind == T_GRAD_ADD)
            gpu_to_device(dc.t[k], c.t[k], bytes);
        else
            gpu_poison(dc.t[k], bytes);
    }
    op->fwd_f(&c);
    if (op->bwd_f) op->bwd_f(&c);
    op->fwd_gpu(g, &dc);
    if (op->bwd_gpu) op->bwd_gpu(g, &dc);
    check_empty_rows(op, &c, 0, sh);
    for (int k = 0; k < op->nt; k++) {
        const op_tensor_t *t = &op->t[k];
        if (t->kind != T_OUT && t->kind != T_GRAD_ADD) continue;
        snprintf(label, sizeof label, "%s %s", op->name, t->name);
        if (t->ids) {
            const int id = find_tensor(op, t->ids);
            const int64_t w = last_dim(t->dims, s);
            gt_compare_scatter(label, dc.t[k], c.t[k], c.t[id], in.sz[id], in.sz[k] / w, (int)w,
                               t->tol > 0 ? t->tol : op->tol);
            continue;
        }
        const double base = t->tol > 0 ? t->tol : op->tol;
        const double tol = (t->flags & OPT_EXACT)    ? 0
                           : (t->flags & OPT_ROWS)   ? gt_tol_rows(base, (int64_t)s->B * s->L)
                           : (t->flags & OPT_ROWS_T) ? gt_tol_rows(base, s->T)
                                                     : base;
        if (t->flags & OPT_INT32)
            gt_compare_int(label, dc.t[k], c.t[k], in.sz[k]);
        else
            gt_compare(label, dc.t[k], c.t[k], in.sz[k], tol);
        if (t->flags & OPT_PER_PARAM) compare_per_param(op, s, label, dc.t[k], c.t[k], tol);
    }
    if (op->derive) {
        /* The GPU's tensors on the host (inputs: the host's own), then the derived pair. */
        h = c;
        for (int k = 0; k < op->nt; k++) {
            const op_tensor_t *t = &op->t[k];
            if (t->kind == T_IDS || t->kind == T_IN) continue;
            h.t[k] = tmr_malloc((size_t)(in.sz[k] > 0 ? in.sz[k] : 1) * sizeof(float));
            gpu_to_host(h.t[k], dc.t[k], (size_t)in.sz[k] * sizeof(float));
        }
        const int k = find_tensor(op, op->derive_of);
        const size_t m = (size_t)(in.sz[k] > 0 ? in.sz[k] : 1);
        float *got = tmr_malloc(m * sizeof(float)), *want = tmr_malloc(m * sizeof(float));
        op->derive(&c, &h, got, want);
        snprintf(label, sizeof label, "%s %s (derived)", op->name, op->derive_of);
        gt_compare_host(label, got, want, in.sz[k], op->tol);
        free(got), free(want);
        for (int j = 0; j < op->nt; j++)
            if (op->t[j].kind != T_IDS && op->t[j].kind != T_IN) free(h.t[j]);
    }
    for (int k = 0; k < op->nt; k++) gpu_free(dc.t[k]);
    if (dc.step_off_dev) gpu_free((void *)dc.step_off_dev);
    case_free(op, &c);
    inputs_free(op, &in);
}
#endif

int op_run_parity(gpu_ctx_t *g, const char *only) {
    const int before = tu_failures, checks = tu_checks;
#ifdef TIMIREC_CUDA
    /* Small shapes in the emulation (TMR_EMU_FULL=1: the GPU's) and when asked
     * (TMR_SMALL_SHAPES=1, e.g. under compute-sanitizer). */
    const int emu = (gpu_is_emulated() && !getenv("TMR_EMU_FULL")) || getenv("TMR_SMALL_SHAPES");
    for (int i = 0; i < op_count; i++) {
        const op_t *op = &op_table[i];
        if (!wanted(only, op->name)) continue;
        op_shape_t sh[OP_MAX_SHAPES];
        const int k = op->shapes(emu ? OPM_PARITY_EMU : OPM_PARITY_GPU, sh);
        for (int j = 0; j < k; j++)
            parity_case(g, op, &sh[j], 1000u * (uint32_t)(i + 1) + 50u * (uint32_t)j);
    }
    printf("parity: worst normalised error %.2e (%s)\n", gt_worst, gt_worst_label);
#else
    (void)g, (void)only;
#endif
    printf("parity: %d checks, %d failed\n", tu_checks - checks, tu_failures - before);
    return tu_failures - before;
}

/* ---- perf mode ------------------------------------------------------------------------------ */

/* Before the CPU is timed: its float op against its double op on the same inputs, as
 * max |f - d| / max |d| per output (1e-5 for what the forward writes; 1e-4 for the backward's
 * outputs, float sums over up to B L rows). The double backward runs on the float forward's
 * saved tensors (converted): a ReLU or an argmax within rounding of its edge would otherwise
 * differ between the precisions for reasons that are no fault of the backward. Returns the
 * number of outputs over tolerance. */
static int fd_compare(const op_t *op, int k, const float *f, const double *d, int64_t m,
                      double tol, const char *sh) {
    double diff = 0, scale = 0;
    for (int64_t j = 0; j < m; j++) {
        tu_max_err(&diff, fabs((double)f[j] - d[j]));
        tu_max_err(&scale, fabs(d[j]));
    }
    const double rel = scale > 0 ? diff / scale : diff;
    if (rel <= tol) return 0;
    printf("  FAIL %s %s [%s]: float vs double %.2e (tolerance %.0e)\n", op->name, op->t[k].name,
           sh, rel, tol);
    return 1;
}

static int float_vs_double(const op_t *op, const inputs_t *in, const char *sh) {
    op_case_t cf, cd;
    host_case(op, in, 0, &cf);
    host_case(op, in, 1, &cd);
    op->fwd_f(&cf);
    op->fwd_d(&cd);
    int fwd_out[OP_MAX_TENSORS] = {0}, bad = 0;
    for (int k = 0; k < op->nt; k++) {
        const op_tensor_t *t = &op->t[k];
        if (t->kind != T_OUT && t->kind != T_SCRATCH) continue;
        const float *f = cf.t[k];
        double *d = cd.t[k];
        fwd_out[k] = in->sz[k] > 0 && !isnan(f[0]); /* written by the forward (outputs start NaN) */
        if (!fwd_out[k]) continue;
        if (t->kind == T_OUT) bad += fd_compare(op, k, f, d, in->sz[k], 1e-5, sh);
        for (int64_t j = 0; j < in->sz[k]; j++) d[j] = f[j];
    }
    if (op->bwd_f) op->bwd_f(&cf);
    if (op->bwd_d) op->bwd_d(&cd);
    for (int k = 0; k < op->nt; k++) {
        const op_tensor_t *t = &op->t[k];
        if ((t->kind == T_OUT && !fwd_out[k]) || t->kind == T_GRAD_ADD)
            bad += fd_compare(op, k, cf.t[k], cd.t[k], in->sz[k], 1e-4, sh);
    }
    case_free(op, &cf);
    case_free(op, &cd);
    return bad;
}

enum { PERF_WARMUP = 3, PERF_MAX = 100 };
static const double perf_budget = 0.3; /* seconds of timed repeats per op (CPU) */

/* Median milliseconds of one direction (bwd 0/1) of op on c (GPU when g). */
static double perf_time(gpu_ctx_t *g, const op_t *op, op_case_t *c, int bwd, int smoke) {
    double ms[PERF_MAX];
    const int warm = smoke ? 0 : PERF_WARMUP;
    int reps = smoke ? 1 : 30;
#ifdef TIMIREC_CUDA
    if (g) {
        gpu_timer_t *tm = gpu_timer_create();
        for (int r = 0; r < warm + reps; r++) {
            gpu_timer_start(tm);
            (bwd ? op->bwd_gpu : op->fwd_gpu)(g, c);
            const float t = gpu_timer_stop_ms(tm);
            if (r >= warm) ms[r - warm] = t;
        }
        gpu_timer_free(tm);
        return bench_median(ms, reps);
    }
#endif
    (void)g;
    op_cpu_fn fn = bwd ? op->bwd_f : op->fwd_f;
    double t0 = tmr_now();
    for (int r = 0; r < warm; r++) fn(c);
    if (!smoke) { /* repeats to fill the budget, 3 to PERF_MAX */
        fn(c);
        const double once = tmr_now() - t0;
        reps = once > 0 ? (int)(perf_budget / once * (warm + 1)) : PERF_MAX;
        reps = reps < 3 ? 3 : reps > PERF_MAX ? PERF_MAX : reps;
    }
    for (int r = 0; r < reps; r++) {
        t0 = tmr_now();
        fn(c);
        ms[r] = 1e3 * (tmr_now() - t0);
    }
    return bench_median(ms, reps);
}

int op_run_perf(gpu_ctx_t *g, const char *only, op_perf_t level, const char *csv_path) {
    const int smoke = level == PERF_SMOKE;
    char device[512];
    double bw_ceil = 0, fl_ceil = 0; /* GB/s, GFLOP/s; 0: unknown */
    if (g) {
#ifdef TIMIREC_CUDA
        gpu_device_count(device, sizeof device);
        for (char *p = device; *p; p++)
            if (*p == ',') *p = ';';
        bw_ceil = bench_device_ceiling(device, "d2d_gbps");
        fl_ceil = 1e3 * bench_device_ceiling(device, "sgemm_tflops");
#endif
    } else {
        bench_cpu_name(device, sizeof device);
    }
    const char *commit = bench_commit(), *date = bench_date();
    int n_bad = 0;
    FILE *csv = NULL;
    if (csv_path && *csv_path && !smoke) {
        csv = fopen(csv_path, "a");
        if (!csv) fprintf(stderr, "op perf: warning: cannot append to %s\n", csv_path);
        else if (ftell(csv) == 0)
            fprintf(csv, g ? "device,date,commit,kernel,shape,us,gbps,gflops,fraction_of_ceiling\n"
                           : "device,date,commit,op,case,shape,impl,threads,repeats,ms,rate,unit,"
                             "max_rel_err,status\n");
    }
    printf("op table perf on %s (%s)", device, g ? "GPU" : "CPU");
    if (g) printf("; ceilings %.0f GB/s (d2d), %.1f TFLOP/s (FP32 SGEMM)%s", bw_ceil, fl_ceil / 1e3,
                  bw_ceil > 0 ? "" : " (unknown: run bench_device)");
    printf("\n%-28s %-34s %10s %10s %10s %9s\n", "op", "shape", "us", "GB/s", "GFLOP/s", "roofline");
    for (int i = 0; i < op_count; i++) {
        const op_t *op = &op_table[i];
        if (!wanted(only, op->name)) continue;
        op_shape_t shs[OP_MAX_SHAPES];
        int n_shapes = op->shapes(smoke ? OPM_PERF_SMOKE : OPM_PERF, shs);
        if (level == PERF_QUICK && n_shapes > 1) n_shapes = 1;
        for (int j = 0; j < n_shapes; j++) {
            char sh[128];
            inputs_t in;
            inputs_make(op, &shs[j], 1000u * (uint32_t)(i + 1) + 50u * (uint32_t)j, &in);
            const op_shape_t *s = &in.s;
            shape_str(s, sh, sizeof sh);
            if (!g && op->fwd_d) n_bad += float_vs_double(op, &in, sh);
            op_case_t c;
            host_case(op, &in, 0, &c);
            op_case_t *run = &c;
#ifdef TIMIREC_CUDA
            op_case_t dc = c;
            if (g) {
                dc.step_off_dev = device_step_off(&in);
                for (int k = 0; k < op->nt; k++) {
                    const size_t bytes = (size_t)in.sz[k] *
                                         (op->t[k].kind == T_IDS ? sizeof(int32_t) : sizeof(float));
                    dc.t[k] = gpu_malloc(bytes);
                    gpu_to_device(dc.t[k], c.t[k], bytes);
                }
                run = &dc;
            }
#endif
            /* The backward reads what its forward saved: the forward runs first. */
            for (int bwd = 0; bwd <= (op->bwd_f != NULL); bwd++) {
                double flops = 0;
                const double bytes = op->cost(s, bwd, &flops);
                const double us = 1e3 * perf_time(g, op, run, bwd, smoke);
                const double gbps = bytes / (us * 1e3), gflops = flops / (us * 1e3);
                const double t_bw = bw_ceil > 0 ? bytes / (bw_ceil * 1e3) : 0;
                const double t_fl = fl_ceil > 0 ? flops / (fl_ceil * 1e3) : 0;
                const double frac = (t_bw > t_fl ? t_bw : t_fl) / us;
                char name[96];
                snprintf(name, sizeof name, "%s_%s", op->name, bwd ? "backward" : "forward");
                printf("%-28s %-34s %10.1f %10.1f %10.1f", name, sh, us, gbps, gflops);
                if (g && frac > 0) printf(" %8.1f%%", 100 * frac);
                printf("\n");
                if (csv && g)
                    fprintf(csv, "%s,%s,%s,%s,%s,%.2f,%.1f,%.1f,%.4f\n", device, date, commit, name,
                            sh, us, gbps, gflops, frac);
                else if (csv)
                    fprintf(csv, "%s,%s,%s,%s,perf,\"%s\",cpu,%d,,%.4f,%.2f,GB/s,,ok\n", device,
                            date, commit, name, sh, omp_get_max_threads(), us / 1e3, gbps);
            }
            fflush(stdout);
#ifdef TIMIREC_CUDA
            if (g) {
                for (int k = 0; k < op->nt; k++) gpu_free(dc.t[k]);
                if (dc.step_off_dev) gpu_free((void *)dc.step_off_dev);
            }
#endif
            case_free(op, &c);
            inputs_free(op, &in);
        }
    }
    if (csv) fclose(csv);
    return n_bad;
}
