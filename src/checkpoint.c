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

int checkpoint_load(const char *path, const model_layout_t *lay, float *params, int strict,
                    int *n_loaded, char *err, size_t errlen) {
    st_file_t f;
    if (st_read(path, &f, err, errlen)) return -1;
    int loaded = 0, rc = 0;
    char want[64], got[64];
    for (int t = 0; t < lay->n_tensors && !rc; t++) {
        const param_t *p = &lay->t[t];
        const st_tensor_t *s = st_find(&f, p->name);
        int64_t shape[2] = {p->rows, p->cols};
        int ndim = p->cols ? 2 : 1;
        if (!s) {
            if (strict)
                rc = tmr_error(err, errlen, "%s: tensor %s is missing (this model needs it)", path,
                               p->name);
            continue;
        }
        shape_str(shape, ndim, want, sizeof want);
        shape_str(s->shape, s->ndim, got, sizeof got);
        if (strcmp(s->dtype, "F32") != 0)
            rc = tmr_error(err, errlen, "%s: tensor %s is %s; timirec reads F32", path, p->name,
                           s->dtype);
        else if (s->ndim != ndim || s->shape[0] != shape[0] || (ndim == 2 && s->shape[1] != shape[1]))
            rc = tmr_error(err, errlen, "%s: tensor %s has shape %s but this model needs %s "
                           "(a checkpoint of another item count, K, emb_size or history_max?)",
                           path, p->name, got, want);
        else {
            memcpy(params + p->offset, st_data(&f, s), (size_t)p->size * sizeof *params);
            loaded++;
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
    st_free(&f);
    if (n_loaded) *n_loaded = loaded;
    return rc;
}
