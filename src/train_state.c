/* The resumable training state (train_state.h): a safetensors file of parameters and Adam
 * moments, with the run's position, dev history, dataset fingerprint and options as metadata. */
#include "timirec/train_state.h"

#include "timirec/common.h"
#include "timirec/safetensors.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void train_progress_free(train_progress_t *p) {
    free(p->dev);
    free(p->row_step);
    p->dev = NULL;
    p->row_step = NULL;
}

/* ---- dataset fingerprint ------------------------------------------------------------------ */

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t mix(uint64_t h, uint64_t x) { return (h ^ x) * FNV_PRIME; }

static uint64_t mix_i32(uint64_t h, const int32_t *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) h = mix(h, (uint32_t)x[i]);
    return h;
}

uint64_t train_state_fingerprint(const corpus_t *c) {
    uint64_t h = FNV_OFFSET;
    h = mix(h, (uint32_t)c->n_users);
    h = mix(h, (uint32_t)c->n_items);
    for (int p = 0; p < N_PHASES; p++) {
        const corpus_phase_t *ph = &c->phase[p];
        h = mix(h, (uint64_t)ph->n_rows);
        h = mix(h, (uint64_t)ph->n_neg);
        h = mix_i32(h, ph->user, ph->n_rows);
        h = mix_i32(h, ph->item, ph->n_rows);
        for (int64_t r = 0; r < ph->n_rows; r++) h = mix(h, (uint64_t)ph->time[r]);
        if (ph->n_neg > 0) h = mix_i32(h, ph->neg, ph->n_rows * ph->n_neg);
    }
    return h;
}

/* ---- option values as text ---------------------------------------------------------------- */

static void option_text(const opt_t *o, char *out, size_t n) {
    if (o->kind == OPT_INT) snprintf(out, n, "%lld", (long long)*(const int64_t *)o->value);
    else if (o->kind == OPT_FLOAT) snprintf(out, n, "%.17g", *(const double *)o->value);
    else {
        const char *s = *(const char *const *)o->value;
        snprintf(out, n, "%s", s ? s : "");
    }
}

/* Printable form of a value for messages (a tab shows as \t). */
static void printable(const char *s, char *out, size_t n) {
    size_t k = 0;
    for (; *s && k + 3 < n; s++) {
        if (*s == '\t') out[k++] = '\\', out[k++] = 't';
        else out[k++] = *s;
    }
    out[k] = '\0';
}

/* ---- save --------------------------------------------------------------------------------- */

#define META_VALUE 512

int train_state_save(const char *path, const model_layout_t *lay, const float *params,
                     const float *adam_m, const float *adam_v, const train_progress_t *p,
                     const opt_t *opts, int n_opts, char *err, size_t errlen) {
    if (p->n_dev > 0 && (!p->dev || p->n_values < 1))
        return tmr_error(err, errlen, "%s: dev history missing", path);
    if (tmr_make_parent_dirs(path, err, errlen)) return -1;
    /* Metadata: 8 progress fields + format + one per option. */
    const int n_fixed = 9, n_meta = n_fixed + n_opts;
    char (*keys)[128] = tmr_calloc((size_t)n_meta, sizeof *keys);
    char (*vals)[META_VALUE] = tmr_calloc((size_t)n_meta, sizeof *vals);
    const char **meta = tmr_calloc((size_t)n_meta * 2, sizeof *meta);
    int m = 0;
#define META(key, ...)                                          \
    do {                                                        \
        snprintf(keys[m], sizeof keys[m], "%s", key);           \
        snprintf(vals[m], sizeof vals[m], __VA_ARGS__);         \
        m++;                                                    \
    } while (0)
    META("format", "%s", TRAIN_STATE_FORMAT);
    META("epoch", "%lld", (long long)p->epoch);
    META("batch", "%lld", (long long)p->batch);
    META("loss_sum", "%.17g", p->loss_sum);
    META("step", "%lld", (long long)p->step);
    META("adam_step", "%lld", (long long)p->adam_step);
    META("n_dev", "%lld", (long long)p->n_dev);
    META("n_values", "%d", p->n_values);
    META("data_fingerprint", "%016" PRIx64, p->data_fingerprint);
#undef META
    for (int i = 0; i < n_opts; i++, m++) {
        snprintf(keys[m], sizeof keys[m], "option.%s", opts[i].name);
        option_text(&opts[i], vals[m], sizeof vals[m]);
    }
    for (int i = 0; i < n_meta; i++) {
        meta[2 * i] = keys[i];
        meta[2 * i + 1] = vals[i];
    }
    /* Tensors: the dev history (F64, first: its data stays 8-byte aligned), then per tensor
     * of the layout its parameters and both moments. */
    int n_ent = 0;
    st_entry_t *e = tmr_calloc((size_t)(3 + 3 * lay->n_tensors), sizeof *e);
    char (*names)[ST_MAX_NAME] = tmr_calloc((size_t)(2 + 3 * lay->n_tensors), sizeof *names);
    if (p->n_dev > 0)
        e[n_ent++] = (st_entry_t){"run.dev", "F64", 2, {p->n_dev, p->n_values}, p->dev};
    static const char *prefix[3] = {"param.", "adam.exp_avg.", "adam.exp_avg_sq."};
    const float *buf[3] = {params, adam_m, adam_v};
    for (int k = 0; k < 3; k++)
        for (int t = 0; t < lay->n_tensors; t++) {
            const param_t *q = &lay->t[t];
            char *name = names[k * lay->n_tensors + t];
            snprintf(name, ST_MAX_NAME, "%s%s", prefix[k], q->name);
            st_entry_t *x = &e[n_ent++];
            x->name = name;
            x->dtype = "F32";
            x->ndim = q->cols ? 2 : 1;
            x->shape[0] = q->rows;
            x->shape[1] = q->cols;
            x->data = buf[k] + q->offset;
        }
    int lazy[2];
    const int n_lazy = p->row_step ? adam_lazy_tensors(lay, lazy) : 0;
    int64_t base = 0;
    for (int k = 0; k < n_lazy; k++) { /* LazyAdam's per-row step counts */
        const param_t *q = &lay->t[lazy[k]];
        char *name = names[3 * lay->n_tensors + k];
        snprintf(name, ST_MAX_NAME, "adam.row_step.%s", q->name);
        e[n_ent++] = (st_entry_t){name, "I64", 1, {q->rows}, p->row_step + base};
        base += q->rows;
    }
    int rc = st_write(path, e, n_ent, meta, n_meta, err, errlen);
    free(e);
    free(names);
    free(meta);
    free(keys);
    free(vals);
    return rc;
}

/* ---- load --------------------------------------------------------------------------------- */

static int meta_i64(const st_file_t *f, const char *path, const char *key, int64_t *v, char *err,
                    size_t errlen) {
    const char *s = st_meta(f, key);
    char *end;
    errno = 0;
    long long x = s ? strtoll(s, &end, 10) : 0;
    if (!s || errno || end == s || *end || x < 0)
        return tmr_error(err, errlen, "%s: metadata \"%s\" is %s (not a training state of this "
                         "version?)", path, key, s ? "not a non-negative integer" : "missing");
    *v = x;
    return 0;
}

static int in_list(const char *name, const char *const *list) {
    for (; list && *list; list++)
        if (strcmp(name, *list) == 0) return 1;
    return 0;
}

/* Compare the state's options with the run's; every difference goes into err. */
static int check_options(const st_file_t *f, const char *path, const opt_t *opts, int n_opts,
                         const char *const *may_differ, char *err, size_t errlen) {
    size_t k = 0;
    int n_diff = 0;
    char now[META_VALUE], key[160], a[128], b[128];
    for (int i = 0; i < n_opts; i++) {
        if (in_list(opts[i].name, may_differ)) continue;
        snprintf(key, sizeof key, "option.%s", opts[i].name);
        const char *was = st_meta(f, key);
        option_text(&opts[i], now, sizeof now);
        if (was && strcmp(was, now) == 0) continue;
        printable(was ? was : "(absent)", a, sizeof a);
        printable(now, b, sizeof b);
        if (n_diff++ == 0)
            k = (size_t)snprintf(err, errlen, "cannot resume from %s: it was written by a run "
                                 "with other options:", path);
        if (k < errlen)
            k += (size_t)snprintf(err + k, errlen - k, "%s --%s %s in the state, %s now",
                                  n_diff > 1 ? ";" : "", opts[i].name, a, b);
    }
    if (n_diff && k < errlen)
        snprintf(err + k, errlen - k, " (options that change training must be the same to "
                 "resume; run without --resume 1 to start afresh)");
    return n_diff ? -1 : 0;
}

/* LazyAdam's per-row step counts into p->row_step (allocated) when the state has them: all
 * of the layout's lazy tables or none. */
static int load_row_step(const st_file_t *f, const char *path, const model_layout_t *lay,
                         train_progress_t *p, char *err, size_t errlen) {
    int lazy[2];
    const int n_lazy = adam_lazy_tensors(lay, lazy);
    char name[ST_MAX_NAME];
    int64_t base = 0;
    for (int k = 0; k < n_lazy; k++) {
        const param_t *q = &lay->t[lazy[k]];
        snprintf(name, sizeof name, "adam.row_step.%s", q->name);
        const st_tensor_t *t = st_find(f, name);
        if (!t && k == 0) return 0; /* a state of Adam */
        if (!t || strcmp(t->dtype, "I64") != 0 || t->ndim != 1 || t->shape[0] != q->rows)
            return tmr_error(err, errlen, "%s: tensor %s missing or not I64 [%lld]", path, name,
                             (long long)q->rows);
        if (!p->row_step)
            p->row_step = tmr_malloc((size_t)adam_lazy_rows(lay) * sizeof *p->row_step);
        memcpy(p->row_step + base, st_data(f, t), (size_t)q->rows * sizeof *p->row_step);
        for (int64_t i = 0; i < q->rows; i++)
            if (p->row_step[base + i] < 0 || p->row_step[base + i] > p->adam_step)
                return tmr_error(err, errlen, "%s: %s[%lld] = %lld is not a step count in 0..%lld",
                                 path, name, (long long)i, (long long)p->row_step[base + i],
                                 (long long)p->adam_step);
        base += q->rows;
    }
    return 0;
}

int train_state_load(const char *path, const model_layout_t *lay, float *params, float *adam_m,
                     float *adam_v, train_progress_t *p, uint64_t data_fingerprint,
                     const opt_t *opts, int n_opts, const char *const *may_differ, char *err,
                     size_t errlen) {
    memset(p, 0, sizeof *p);
    st_file_t f;
    if (st_read(path, &f, err, errlen)) return -1;
    int rc = 0;
    const char *fmt = st_meta(&f, "format");
    if (!fmt || strcmp(fmt, TRAIN_STATE_FORMAT) != 0) {
        rc = tmr_error(err, errlen, "%s: not a training state (format \"%s\", expected \"%s\")",
                       path, fmt ? fmt : "(none)", TRAIN_STATE_FORMAT);
        goto done;
    }
    if ((rc = check_options(&f, path, opts, n_opts, may_differ, err, errlen))) goto done;
    const char *fp = st_meta(&f, "data_fingerprint");
    char want[32];
    snprintf(want, sizeof want, "%016" PRIx64, data_fingerprint);
    if (!fp || strcmp(fp, want) != 0) {
        rc = tmr_error(err, errlen, "cannot resume from %s: it was written for other data (dataset "
                       "fingerprint %s, the files now give %s): the dataset's files changed",
                       path, fp ? fp : "(none)", want);
        goto done;
    }
    int64_t n_values = 0;
    if ((rc = meta_i64(&f, path, "epoch", &p->epoch, err, errlen)) ||
        (rc = meta_i64(&f, path, "batch", &p->batch, err, errlen)) ||
        (rc = meta_i64(&f, path, "step", &p->step, err, errlen)) ||
        (rc = meta_i64(&f, path, "adam_step", &p->adam_step, err, errlen)) ||
        (rc = meta_i64(&f, path, "n_dev", &p->n_dev, err, errlen)) ||
        (rc = meta_i64(&f, path, "n_values", &n_values, err, errlen)))
        goto done;
    const char *ls = st_meta(&f, "loss_sum");
    char *end;
    p->loss_sum = ls ? strtod(ls, &end) : 0;
    if (!ls || end == ls || *end) {
        rc = tmr_error(err, errlen, "%s: metadata \"loss_sum\" is missing or not a number", path);
        goto done;
    }
    if (n_values < 1 || n_values > 64 || p->n_dev != p->epoch || p->adam_step > p->step ||
        p->n_dev > 10000000) {
        rc = tmr_error(err, errlen, "%s: inconsistent state (epoch %lld, finished epochs %lld, "
                       "values %lld, step %lld, Adam step %lld)", path, (long long)p->epoch,
                       (long long)p->n_dev, (long long)n_values, (long long)p->step,
                       (long long)p->adam_step);
        goto done;
    }
    p->n_values = (int)n_values;
    p->data_fingerprint = data_fingerprint;
    p->dev = tmr_calloc((size_t)(p->n_dev > 0 ? p->n_dev : 1) * (size_t)p->n_values, sizeof *p->dev);
    if (p->n_dev > 0) {
        const st_tensor_t *t = st_find(&f, "run.dev");
        if (!t || strcmp(t->dtype, "F64") != 0 || t->ndim != 2 || t->shape[0] != p->n_dev ||
            t->shape[1] != p->n_values) {
            rc = tmr_error(err, errlen, "%s: tensor run.dev missing or not F64 [%lld, %d]", path,
                           (long long)p->n_dev, p->n_values);
            goto done;
        }
        memcpy(p->dev, st_data(&f, t), (size_t)p->n_dev * (size_t)p->n_values * sizeof *p->dev);
    }
    static const char *prefix[3] = {"param.", "adam.exp_avg.", "adam.exp_avg_sq."};
    float *buf[3] = {params, adam_m, adam_v};
    char name[ST_MAX_NAME];
    for (int k = 0; k < 3 && !rc; k++)
        for (int i = 0; i < lay->n_tensors && !rc; i++) {
            const param_t *q = &lay->t[i];
            snprintf(name, sizeof name, "%s%s", prefix[k], q->name);
            const st_tensor_t *t = st_find(&f, name);
            int ndim = q->cols ? 2 : 1;
            if (!t || strcmp(t->dtype, "F32") != 0 || t->ndim != ndim || t->shape[0] != q->rows ||
                (ndim == 2 && t->shape[1] != q->cols))
                rc = tmr_error(err, errlen, "%s: tensor %s missing or not F32 of this model's shape",
                               path, name);
            else memcpy(buf[k] + q->offset, st_data(&f, t), (size_t)q->size * sizeof(float));
        }
    if (!rc) rc = load_row_step(&f, path, lay, p, err, errlen);
done:
    st_free(&f);
    if (rc) train_progress_free(p);
    return rc;
}
