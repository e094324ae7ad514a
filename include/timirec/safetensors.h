/* safetensors files: an 8-byte little-endian header length, a JSON header
 *   {"__metadata__": {"key": "value", ...},
 *    "name": {"dtype": "F32", "shape": [3707, 64], "data_offsets": [begin, end]}, ...}
 * padded with spaces to a multiple of 8, then the raw little-endian tensor bytes (offsets are
 * relative to the end of the header). PyTorch users read them with safetensors.torch.load_file.
 *
 * The reader checks everything before handing out a pointer: header length within the file,
 * JSON well formed (no \u0000 inside strings), known dtype, shape product x dtype size ==
 * end - begin, ranges inside the data section and not overlapping. Errors name the file and the tensor. */
#ifndef TIMIREC_SAFETENSORS_H
#define TIMIREC_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ST_MAX_DIMS 8
#define ST_MAX_NAME 160

typedef struct {
    char name[ST_MAX_NAME];
    char dtype[8];            /* "F32", "F64", "I32", "I64", "U8", ... */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t begin, end;       /* byte range within the data section */
} st_tensor_t;

typedef struct {
    char *buf;                /* the whole file */
    size_t len;
    size_t data_start;        /* 8 + header length */
    int n_tensors;
    st_tensor_t *tensors;
    int n_meta;
    char **meta_key, **meta_val;
} st_file_t;

/* Bytes per element of a dtype, 0 when unknown. */
int st_dtype_size(const char *dtype);

/* Read and validate a file. Returns 0, or -1 with a message (the file is then empty). */
int st_read(const char *path, st_file_t *f, char *err, size_t errlen);
void st_free(st_file_t *f);
const st_tensor_t *st_find(const st_file_t *f, const char *name);
const void *st_data(const st_file_t *f, const st_tensor_t *t);
int64_t st_numel(const st_tensor_t *t);
const char *st_meta(const st_file_t *f, const char *key); /* NULL when absent */

/* One tensor to write. */
typedef struct {
    const char *name;
    const char *dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;
} st_entry_t;

/* Write atomically: a temporary file in the same folder, flushed and fsynced, renamed into
 * place, so a crash at any moment leaves either the old file or the new one. meta holds
 * n_meta (key, value) string pairs. Returns 0 or -1 with a message. */
int st_write(const char *path, const st_entry_t *entries, int n, const char *const *meta,
             int n_meta, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
