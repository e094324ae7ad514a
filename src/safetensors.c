/* safetensors reader (validating) and atomic writer. The header parser is a small JSON
 * reader for exactly this shape of document; anything else is an error, never a crash. */
#include "timirec/safetensors.h"

#include "timirec/common.h"
#include "timirec/text.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ST_MAX_HEADER (100u << 20) /* the format's own limit is 100 MB */

int st_dtype_size(const char *dtype) {
    static const struct {
        const char *name;
        int size;
    } k[] = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4},
             {"I16", 2}, {"I8", 1},  {"U64", 8}, {"U32", 4},  {"U16", 2}, {"U8", 1}, {"BOOL", 1}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (strcmp(dtype, k[i].name) == 0) return k[i].size;
    return 0;
}

/* ---- JSON reading ------------------------------------------------------------------------ */

typedef struct {
    const char *p, *end;
    const char *start; /* header start, for byte positions in messages */
    const char *path;
    char *err;
    size_t errlen;
} json_t;

static int jerr(json_t *j, const char *what) {
    return tmr_error(j->err, j->errlen, "%s: bad safetensors header: %s", j->path, what);
}

static void ws(json_t *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int expect(json_t *j, char c) {
    ws(j);
    if (j->p >= j->end || *j->p != c) {
        char msg[48];
        snprintf(msg, sizeof msg, "expected '%c' at header byte %ld", c, (long)(j->p - j->start));
        return jerr(j, msg);
    }
    j->p++;
    return 0;
}

static int peek(json_t *j, char c) {
    ws(j);
    return j->p < j->end && *j->p == c;
}

/* A string into out (NUL-terminated, at most outlen - 1 bytes, longer is an error). */
static int string(json_t *j, char *out, size_t outlen) {
    if (expect(j, '"')) return -1;
    size_t n = 0;
    while (j->p < j->end && *j->p != '"') {
        unsigned c = (unsigned char)*j->p++;
        if (c == '\\') {
            if (j->p >= j->end) return jerr(j, "unterminated escape");
            char e = *j->p++;
            switch (e) {
            case '"': c = '"'; break;
            case '\\': c = '\\'; break;
            case '/': c = '/'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u': {
                if (j->end - j->p < 4) return jerr(j, "short \\u escape");
                unsigned v = 0;
                for (int i = 0; i < 4; i++) {
                    char h = *j->p++;
                    v <<= 4;
                    if (h >= '0' && h <= '9') v |= (unsigned)(h - '0');
                    else if (h >= 'a' && h <= 'f') v |= (unsigned)(h - 'a' + 10);
                    else if (h >= 'A' && h <= 'F') v |= (unsigned)(h - 'A' + 10);
                    else return jerr(j, "bad \\u escape");
                }
                if (v == 0) return jerr(j, "\\u0000 in a string"); /* would cut a C string short */
                /* UTF-8 for the basic plane (surrogate pairs are not needed for tensor names) */
                char u[3];
                int un;
                if (v < 0x80) u[0] = (char)v, un = 1;
                else if (v < 0x800) u[0] = (char)(0xC0 | v >> 6), u[1] = (char)(0x80 | (v & 0x3F)), un = 2;
                else u[0] = (char)(0xE0 | v >> 12), u[1] = (char)(0x80 | ((v >> 6) & 0x3F)),
                u[2] = (char)(0x80 | (v & 0x3F)), un = 3;
                for (int i = 0; i < un; i++) {
                    if (n + 1 >= outlen) return jerr(j, "string too long");
                    out[n++] = u[i];
                }
                continue;
            }
            default: return jerr(j, "unknown escape");
            }
        } else if (c < 0x20) {
            return jerr(j, "control character in a string");
        }
        if (n + 1 >= outlen) return jerr(j, "string too long");
        out[n++] = (char)c;
    }
    if (j->p >= j->end) return jerr(j, "unterminated string");
    j->p++;
    out[n] = '\0';
    return 0;
}

static int integer(json_t *j, int64_t *out) {
    ws(j);
    const char *s = j->p;
    int64_t v = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        if (v > (INT64_MAX - 9) / 10) return jerr(j, "integer too large");
        v = v * 10 + (*j->p++ - '0');
    }
    if (j->p == s) return jerr(j, "expected a non-negative integer");
    *out = v;
    return 0;
}

/* Skip any JSON value (for keys we do not use), with a depth limit. */
static int skip_value(json_t *j, int depth) {
    if (depth > 64) return jerr(j, "nested too deeply");
    ws(j);
    if (j->p >= j->end) return jerr(j, "truncated");
    char c = *j->p;
    if (c == '"') {
        char tmp[4096];
        return string(j, tmp, sizeof tmp);
    }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->p++;
        if (peek(j, close)) return j->p++, 0;
        for (;;) {
            if (c == '{') {
                char key[4096];
                if (string(j, key, sizeof key) || expect(j, ':')) return -1;
            }
            if (skip_value(j, depth + 1)) return -1;
            if (peek(j, ',')) {
                j->p++;
                continue;
            }
            return expect(j, close);
        }
    }
    /* number, true, false, null */
    const char *s = j->p;
    while (j->p < j->end && strchr("+-.0123456789eEtruefalsn", *j->p)) j->p++;
    return j->p == s ? jerr(j, "unexpected character") : 0;
}

static int int_array(json_t *j, int64_t *out, int max, int *n) {
    if (expect(j, '[')) return -1;
    *n = 0;
    if (peek(j, ']')) return j->p++, 0;
    for (;;) {
        if (*n >= max) return jerr(j, "array too long");
        if (integer(j, &out[(*n)++])) return -1;
        if (peek(j, ',')) {
            j->p++;
            continue;
        }
        return expect(j, ']');
    }
}

static int tensor_entry(json_t *j, st_tensor_t *t) {
    int have_dtype = 0, have_shape = 0, have_off = 0;
    if (expect(j, '{')) return -1;
    if (peek(j, '}')) return j->p++, jerr(j, "empty tensor entry");
    for (;;) {
        char key[64];
        if (string(j, key, sizeof key) || expect(j, ':')) return -1;
        if (strcmp(key, "dtype") == 0) {
            if (string(j, t->dtype, sizeof t->dtype)) return -1;
            have_dtype = 1;
        } else if (strcmp(key, "shape") == 0) {
            if (int_array(j, t->shape, ST_MAX_DIMS, &t->ndim)) return -1;
            have_shape = 1;
        } else if (strcmp(key, "data_offsets") == 0) {
            int64_t off[2];
            int n;
            if (int_array(j, off, 2, &n)) return -1;
            if (n != 2) return jerr(j, "data_offsets needs two numbers");
            t->begin = off[0];
            t->end = off[1];
            have_off = 1;
        } else if (skip_value(j, 1)) {
            return -1;
        }
        if (peek(j, ',')) {
            j->p++;
            continue;
        }
        if (expect(j, '}')) return -1;
        break;
    }
    if (!have_dtype || !have_shape || !have_off)
        return tmr_error(j->err, j->errlen, "%s: tensor %s lacks dtype, shape or data_offsets",
                         j->path, t->name);
    return 0;
}

static int meta_entries(json_t *j, st_file_t *f) {
    if (expect(j, '{')) return -1;
    if (peek(j, '}')) return j->p++, 0;
    for (;;) {
        char key[256], *val = tmr_malloc(1 << 16);
        if (string(j, key, sizeof key) || expect(j, ':') || string(j, val, 1 << 16)) {
            free(val);
            return -1;
        }
        f->meta_key = tmr_realloc(f->meta_key, (size_t)(f->n_meta + 1) * sizeof *f->meta_key);
        f->meta_val = tmr_realloc(f->meta_val, (size_t)(f->n_meta + 1) * sizeof *f->meta_val);
        f->meta_key[f->n_meta] = strdup(key);
        f->meta_val[f->n_meta] = tmr_realloc(val, strlen(val) + 1);
        f->n_meta++;
        if (peek(j, ',')) {
            j->p++;
            continue;
        }
        return expect(j, '}');
    }
}

/* By byte range (begin, then end: an empty tensor sorts before one starting at its offset). */
static int cmp_range(const void *a, const void *b) {
    const st_tensor_t *x = a, *y = b;
    if (x->begin != y->begin) return (x->begin > y->begin) - (x->begin < y->begin);
    return (x->end > y->end) - (x->end < y->end);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const st_tensor_t *)a)->name, ((const st_tensor_t *)b)->name);
}

int st_read(const char *path, st_file_t *f, char *err, size_t errlen) {
    memset(f, 0, sizeof *f);
    /* Whole file, buffer sized once from the file's size (text.h). */
    char *buf;
    size_t n;
    if (text_read_file(path, &buf, &n, err, errlen)) return -1;
    f->buf = buf;
    f->len = n;
    if (n < 8) {
        st_free(f);
        return tmr_error(err, errlen, "%s: %zu bytes: too short for a safetensors file", path, n);
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | (unsigned char)buf[i];
    if (hlen > ST_MAX_HEADER || hlen > n - 8) {
        st_free(f);
        return tmr_error(err, errlen, "%s: header length %llu does not fit the %zu-byte file "
                         "(truncated or not safetensors)", path, (unsigned long long)hlen, n);
    }
    f->data_start = 8 + (size_t)hlen;
    json_t j = {buf + 8, buf + 8 + hlen, buf + 8, path, err, errlen};
    int rc = expect(&j, '{'), have_meta = 0, cap_tensors = 0;
    if (!rc && peek(&j, '}')) j.p++;
    else
        while (!rc) {
            char name[ST_MAX_NAME];
            if ((rc = string(&j, name, sizeof name)) || (rc = expect(&j, ':'))) break;
            if (strcmp(name, "__metadata__") == 0) {
                rc = have_meta++ ? jerr(&j, "__metadata__ appears twice") : meta_entries(&j, f);
            } else {
                if (f->n_tensors == cap_tensors) {
                    cap_tensors = cap_tensors ? 2 * cap_tensors : 64;
                    f->tensors = tmr_realloc(f->tensors,
                                             tmr_mul_size((size_t)cap_tensors, sizeof *f->tensors));
                }
                st_tensor_t *t = &f->tensors[f->n_tensors++];
                memset(t, 0, sizeof *t);
                snprintf(t->name, sizeof t->name, "%s", name);
                rc = tensor_entry(&j, t);
            }
            if (rc) break;
            if (peek(&j, ',')) {
                j.p++;
                continue;
            }
            rc = expect(&j, '}');
            break;
        }
    if (!rc) {
        ws(&j);
        if (j.p != j.end) rc = jerr(&j, "text after the closing brace");
    }
    /* Every tensor: known dtype, size matching its shape, inside the data section. */
    uint64_t data_len = n - f->data_start;
    for (int i = 0; i < f->n_tensors && !rc; i++) {
        const st_tensor_t *t = &f->tensors[i];
        int es = st_dtype_size(t->dtype);
        if (!es) {
            rc = tmr_error(err, errlen, "%s: tensor %s has unknown dtype %s", path, t->name, t->dtype);
            break;
        }
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] > 0 && numel > INT64_MAX / 8 / t->shape[d]) {
                rc = tmr_error(err, errlen, "%s: tensor %s: shape too large", path, t->name);
                break;
            }
            numel *= t->shape[d];
        }
        if (rc) break;
        if (t->end < t->begin)
            rc = tmr_error(err, errlen, "%s: tensor %s: data_offsets [%lld, %lld] end before they "
                           "begin", path, t->name, (long long)t->begin, (long long)t->end);
        else if (t->end - t->begin != numel * es)
            rc = tmr_error(err, errlen, "%s: tensor %s: data_offsets [%lld, %lld] hold %lld bytes "
                           "but %s of shape with %lld elements needs %lld", path, t->name,
                           (long long)t->begin, (long long)t->end, (long long)(t->end - t->begin),
                           t->dtype, (long long)numel, (long long)(numel * es));
        else if ((uint64_t)t->end > data_len)
            rc = tmr_error(err, errlen, "%s: tensor %s ends at byte %lld of a %llu-byte data "
                           "section (truncated file?)", path, t->name, (long long)t->end,
                           (unsigned long long)data_len);
    }
    /* Names unique; byte ranges tiling the data section exactly, in any header order: no
     * overlap, no gap, nothing after the last tensor (what the safetensors library itself
     * requires, so a file read here is one PyTorch reads too). */
    if (!rc && f->n_tensors > 0) {
        size_t nt = (size_t)f->n_tensors;
        st_tensor_t *s = tmr_malloc(tmr_mul_size(nt, sizeof *s));
        memcpy(s, f->tensors, nt * sizeof *s);
        qsort(s, nt, sizeof *s, cmp_name);
        for (size_t i = 1; i < nt && !rc; i++)
            if (strcmp(s[i].name, s[i - 1].name) == 0)
                rc = tmr_error(err, errlen, "%s: tensor %s appears twice in the header", path,
                               s[i].name);
        qsort(s, nt, sizeof *s, cmp_range);
        int64_t at = 0;
        const char *prev = NULL;
        for (size_t i = 0; i < nt && !rc; i++) {
            if (s[i].begin < at)
                rc = tmr_error(err, errlen, "%s: tensors %s and %s overlap (bytes [%lld, %lld) "
                               "and [%lld, %lld))", path, prev, s[i].name,
                               (long long)s[i - 1].begin, (long long)s[i - 1].end,
                               (long long)s[i].begin, (long long)s[i].end);
            else if (s[i].begin > at)
                rc = tmr_error(err, errlen, "%s: tensor %s starts at byte %lld but %s ends at "
                               "%lld (a gap in the data section)", path, s[i].name,
                               (long long)s[i].begin, prev ? prev : "the header",
                               (long long)at);
            at = s[i].end;
            prev = s[i].name;
        }
        free(s);
        if (!rc && (uint64_t)at != data_len)
            rc = tmr_error(err, errlen, "%s: %llu bytes after the last tensor (the data section "
                           "holds %llu, the tensors %lld)", path,
                           (unsigned long long)(data_len - (uint64_t)at),
                           (unsigned long long)data_len, (long long)at);
    } else if (!rc && data_len != 0) {
        rc = tmr_error(err, errlen, "%s: no tensors, but %llu bytes after the header", path,
                       (unsigned long long)data_len);
    }
    if (rc) {
        st_free(f);
        return -1;
    }
    return 0;
}

void st_free(st_file_t *f) {
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_key[i]);
        free(f->meta_val[i]);
    }
    free(f->meta_key);
    free(f->meta_val);
    free(f->tensors);
    free(f->buf);
    memset(f, 0, sizeof *f);
}

const st_tensor_t *st_find(const st_file_t *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const void *st_data(const st_file_t *f, const st_tensor_t *t) {
    return f->buf + f->data_start + t->begin;
}

int64_t st_numel(const st_tensor_t *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

const char *st_meta(const st_file_t *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_key[i], key) == 0) return f->meta_val[i];
    return NULL;
}

/* ---- writing ----------------------------------------------------------------------------- */

typedef struct {
    char *s;
    size_t n, cap;
} sbuf_t;

static void put(sbuf_t *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        while (b->n + n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 4096;
        b->s = tmr_realloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void puts_(sbuf_t *b, const char *s) { put(b, s, strlen(s)); }

static void put_json_string(sbuf_t *b, const char *s) {
    puts_(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char tmp[8];
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            put(b, tmp, 2);
        } else if (c < 0x20) {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            puts_(b, tmp);
        } else {
            put(b, (const char *)&c, 1);
        }
    }
    puts_(b, "\"");
}

int st_write(const char *path, const st_entry_t *entries, int n, const char *const *meta,
             int n_meta, char *err, size_t errlen) {
    sbuf_t h = {0};
    char tmp[64];
    puts_(&h, "{");
    if (n_meta > 0) {
        puts_(&h, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) puts_(&h, ",");
            put_json_string(&h, meta[2 * i]);
            puts_(&h, ":");
            put_json_string(&h, meta[2 * i + 1]);
        }
        puts_(&h, "}");
    }
    int64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const st_entry_t *e = &entries[i];
        int es = st_dtype_size(e->dtype);
        if (!es) {
            free(h.s);
            return tmr_error(err, errlen, "%s: tensor %s: unknown dtype %s", path, e->name, e->dtype);
        }
        int64_t numel = 1;
        for (int d = 0; d < e->ndim; d++) numel *= e->shape[d];
        if (n_meta > 0 || i) puts_(&h, ",");
        put_json_string(&h, e->name);
        puts_(&h, ":{\"dtype\":");
        put_json_string(&h, e->dtype);
        puts_(&h, ",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) {
            snprintf(tmp, sizeof tmp, d ? ",%lld" : "%lld", (long long)e->shape[d]);
            puts_(&h, tmp);
        }
        snprintf(tmp, sizeof tmp, "],\"data_offsets\":[%lld,%lld]}", (long long)offset,
                 (long long)(offset + numel * es));
        puts_(&h, tmp);
        offset += numel * es;
    }
    puts_(&h, "}");
    while ((8 + h.n) % 8) puts_(&h, " ");

    /* Temporary file beside the target, then rename. */
    size_t plen = strlen(path);
    char *tmp_path = tmr_malloc(plen + 32);
    snprintf(tmp_path, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    FILE *fp = fopen(tmp_path, "wb");
    if (!fp) {
        int e = errno;
        free(h.s);
        free(tmp_path);
        return tmr_error(err, errlen, "%s: cannot write: %s", path, strerror(e));
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
    int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(h.s, 1, h.n, fp) == h.n;
    for (int i = 0; i < n && ok; i++) {
        const st_entry_t *e = &entries[i];
        int64_t numel = 1;
        for (int d = 0; d < e->ndim; d++) numel *= e->shape[d];
        size_t bytes = (size_t)numel * (size_t)st_dtype_size(e->dtype);
        ok = fwrite(e->data, 1, bytes, fp) == bytes;
    }
    ok = ok && fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    int e = errno;
    ok = (fclose(fp) == 0) && ok;
    free(h.s);
    if (!ok || rename(tmp_path, path) != 0) {
        if (ok) e = errno;
        unlink(tmp_path);
        free(tmp_path);
        return tmr_error(err, errlen, "%s: writing failed: %s", path, strerror(e));
    }
    free(tmp_path);
    /* Make the rename itself durable. */
    char *dir_copy = strdup(path);
    int dfd = open(dirname(dir_copy), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(dir_copy);
    return 0;
}
