#include "timirec/checkpoint.h"

#include "timirec/common.h"
#include "timirec/safetensors.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int checkpoint_save(const char *path, const model_layout_t *lay, const float *params,
                    const char *config_json, char *err, size_t errlen) {
    if (tmr_make_parent_dirs(path, err, errlen)) return -1;
    st_entry_t *e = tmr_calloc((size_t)lay->n_tensors, sizeof *e);
    for (int t = 0; t < lay->n_tensors; t++) {
        const param_t *p = &lay->t[t];
        e[t].name = p->name;
        e[t].dtype = "F32";
        e[t].ndim = p->cols ? 2 : 1;
        e[t].shape[0] = p->rows;
        e[t].shape[1] = p->cols;
        e[t].data = params + p->offset;
    }
    const char *meta[] = {"format", CHECKPOINT_FORMAT, "config", config_json ? config_json : "{}"};
    int rc = st_write(path, e, lay->n_tensors, meta, 2, err, errlen);
    free(e);
    return rc;
}

static void shape_str(const int64_t *shape, int ndim, char *out, size_t n) {
    size_t k = (size_t)snprintf(out, n, "[");
    for (int d = 0; d < ndim && k < n; d++)
        k += (size_t)snprintf(out + k, n - k, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (k < n) snprintf(out + k, n - k, "]");
}

/* Which setting sizes dimension `dim` of table entry t, for the hint of a shape mismatch. */
typedef enum { SZ_OTHER, SZ_ITEMS, SZ_ITEMS_PLUS1, SZ_HISTORY_PLUS1, SZ_K, SZ_ATTN, SZ_EMB,
               SZ_EMB3 } size_source_t;

static size_source_t dim_source(const model_layout_t *lay, int t, int dim) {
    int pid = -1;
    for (int i = 0; i < P_COUNT && pid < 0; i++)
        if (lay->id[i] == t) pid = i;
    int last = lay->n_proj - 1;
    if (lay->n_proj > 0 && (t == lay->proj_w[last] || t == lay->proj_b[last]))
        return dim == 0 ? SZ_K : SZ_EMB;
    if (pid < 0) return SZ_EMB; /* hidden projection layers: [d, d] and [d] */
    if (dim == 0) {
        switch (pid) {
        case P_EXT_ITEM_EMB: return SZ_ITEMS;
        case P_PRED_ITEM_EMB: return SZ_ITEMS_PLUS1;
        case P_EXT_POS_EMB: return SZ_HISTORY_PLUS1;
        case P_EXT_W1: case P_EXT_B1: return SZ_ATTN;
        case P_EXT_W2: case P_EXT_B2: return SZ_K;
        case P_GRU_W_IH: case P_GRU_W_HH: case P_GRU_B_IH: case P_GRU_B_HH: return SZ_EMB3;
        default: return SZ_EMB;
        }
    }
    return pid == P_EXT_W2 ? SZ_ATTN : SZ_EMB;
}

/* "(another K? ...)": what a shape mismatch most likely means, with both values. */
static void shape_hint(const model_layout_t *lay, int t, const st_tensor_t *s, char *out,
                       size_t n) {
    const param_t *p = &lay->t[t];
    int ndim = p->cols ? 2 : 1;
    int64_t want[2] = {p->rows, p->cols};
    int dim = s->ndim != ndim ? -1 : s->shape[0] != want[0] ? 0 : 1;
    if (dim < 0) {
        snprintf(out, n, "(a %d-D tensor where this model has a %d-D one: not a checkpoint of "
                 "this model)", s->ndim, ndim);
        return;
    }
    int64_t got = s->shape[dim];
    const model_config_t *c = &lay->cfg;
    switch (dim_source(lay, t, dim)) {
    case SZ_ITEMS:
        snprintf(out, n, "(another dataset or item count? the file has %lld item rows, this "
                 "dataset %d)", (long long)got, c->n_items);
        break;
    case SZ_ITEMS_PLUS1:
        snprintf(out, n, "(another dataset or item count? the file has %lld item rows, this "
                 "dataset %d + 1)", (long long)got, c->n_items);
        break;
    case SZ_HISTORY_PLUS1:
        snprintf(out, n, "(another history_max? the file's is %lld, this run's %d)",
                 (long long)got - 1, c->history_max);
        break;
    case SZ_K:
        snprintf(out, n, "(another K? the file has K = %lld interests, this run K = %d)",
                 (long long)got, c->K);
        break;
    case SZ_ATTN:
        snprintf(out, n, "(another attn_size? the file's is %lld, this run's %d)", (long long)got,
                 c->attn_size);
        break;
    case SZ_EMB3:
        if (got % 3 == 0)
            snprintf(out, n, "(another emb_size? the file's is %lld, this run's %d)",
                     (long long)got / 3, c->emb_size);
        else
            snprintf(out, n, "(not a GRU of this model: rows must be 3 x emb_size = %d)",
                     3 * c->emb_size);
        break;
    case SZ_EMB:
        snprintf(out, n, "(another emb_size? the file's is %lld, this run's %d)", (long long)got,
                 c->emb_size);
        break;
    default:
        snprintf(out, n, "(a checkpoint of another configuration?)");
    }
}

/* The format metadata: this version of the checkpoint format, or what the safetensors library
 * writes itself ("pt" from safetensors.torch.save_file of the reference's state_dict, or absent,
 * or another framework's tag); anything else is some other file. */
static int check_format(const char *path, const st_file_t *f, char *err, size_t errlen) {
    static const char *const framework_tags[] = {"pt", "np", "tf", "flax", "mlx"};
    const char *fmt = st_meta(f, "format");
    static const char prefix[] = "timirec-checkpoint-";
    if (!fmt || strcmp(fmt, CHECKPOINT_FORMAT) == 0) return 0;
    for (size_t i = 0; i < sizeof framework_tags / sizeof framework_tags[0]; i++)
        if (strcmp(fmt, framework_tags[i]) == 0) return 0;
    if (strncmp(fmt, prefix, sizeof prefix - 1) == 0)
        return tmr_error(err, errlen, "%s: checkpoint format version \"%s\"; this build reads "
                         "version \"%s\" (written by another version of timirec?)", path,
                         fmt + sizeof prefix - 1, &CHECKPOINT_FORMAT[sizeof prefix - 1]);
    return tmr_error(err, errlen, "%s: format metadata \"%.60s\" is not a model checkpoint "
                     "(expected \"%s\"%s)", path, fmt, CHECKPOINT_FORMAT,
                     strcmp(fmt, "timirec-train-state-1") == 0
                         ? ": this is a training state, for --resume 1" : "");
}

int checkpoint_load(const char *path, const model_layout_t *lay, float *params, int strict,
                    int *n_loaded, char *err, size_t errlen) {
    st_file_t f;
    if (n_loaded) *n_loaded = 0;
    if (st_read(path, &f, err, errlen)) return -1;
    int rc = check_format(path, &f, err, errlen);
    /* Everything is checked before anything is copied: a refused file leaves params as they
     * were. */
    char want[64], got[64], hint[160];
    for (int t = 0; t < lay->n_tensors && !rc; t++) {
        const param_t *p = &lay->t[t];
        const st_tensor_t *s = st_find(&f, p->name);
        int64_t shape[2] = {p->rows, p->cols};
        int ndim = p->cols ? 2 : 1;
        if (!s) {
            if (strict)
                rc = tmr_error(err, errlen, "%s: tensor %s is missing (this model needs it; "
                               "a checkpoint of the other stage?)", path, p->name);
            continue;
        }
        shape_str(shape, ndim, want, sizeof want);
        shape_str(s->shape, s->ndim, got, sizeof got);
        if (strcmp(s->dtype, "F32") != 0)
            rc = tmr_error(err, errlen, "%s: tensor %s is %s; this model needs F32", path,
                           p->name, s->dtype);
        else if (s->ndim != ndim || s->shape[0] != shape[0] || (ndim == 2 && s->shape[1] != shape[1])) {
            shape_hint(lay, t, s, hint, sizeof hint);
            rc = tmr_error(err, errlen, "%s: tensor %s has shape %s, this model needs %s %s", path,
                           p->name, got, want, hint);
        }
    }
    if (!rc && strict) {
        for (int i = 0; i < f.n_tensors && !rc; i++) {
            int known = 0;
            for (int t = 0; t < lay->n_tensors && !known; t++)
                known = strcmp(f.tensors[i].name, lay->t[t].name) == 0;
            if (!known)
                rc = tmr_error(err, errlen, "%s: unexpected tensor %s (not part of this model: "
                               "another stage or configuration?)", path, f.tensors[i].name);
        }
    }
    int loaded = 0;
    for (int t = 0; t < lay->n_tensors && !rc; t++) {
        const st_tensor_t *s = st_find(&f, lay->t[t].name);
        if (!s) continue;
        memcpy(params + lay->t[t].offset, st_data(&f, s), (size_t)lay->t[t].size * sizeof *params);
        loaded++;
    }
    st_free(&f);
    if (n_loaded) *n_loaded = loaded;
    return rc;
}
