/* Text scanning shared by the input readers (text.h). */
#include "timirec/text.h"

#include "timirec/common.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int text_read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) return text_line_error(err, errlen, path, 0, "cannot open: %s", strerror(errno));
    /* A regular file's size sizes the buffer once (+2: room for the NUL and for the read that
     * sees end of file); pipes start at 64 KiB and double. */
    struct stat st;
    size_t cap = 1 << 16, n = 0;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
        cap = (size_t)st.st_size + 2;
    char *b = tmr_malloc(cap);
    for (;;) {
        if (cap - n < 2) {
            cap = tmr_mul_size(cap, 2);
            b = tmr_realloc(b, cap);
        }
        size_t got = fread(b + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f), e = errno;
    fclose(f);
    if (bad) {
        free(b);
        return text_line_error(err, errlen, path, 0, "cannot read: %s", strerror(e));
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return 0;
}

int text_parse_i64(text_span_t f, int64_t *out) {
    size_t i = 0;
    int neg = 0;
    if (f.n && (f.s[0] == '-' || f.s[0] == '+')) neg = f.s[i++] == '-';
    if (i == f.n) return 1;
    /* Accumulate the magnitude unsigned: |INT64_MIN| = INT64_MAX + 1 fits. */
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    int range = 0;
    for (; i < f.n; i++) {
        unsigned d = (unsigned)(f.s[i] - '0');
        if (d > 9) return 1; /* "1.5" and "99999999999999999999x" are not numbers */
        if (v > (limit - d) / 10) range = 1;
        else v = v * 10 + d;
    }
    if (range) return 2;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

const char *text_quote(text_span_t f, char *out, size_t outlen) {
    size_t n = f.n > 40 ? 40 : f.n;
    snprintf(out, outlen, "\"%.*s%s\"", (int)n, f.s, f.n > 40 ? "..." : "");
    return out;
}

int text_line_error(char *err, size_t errlen, const char *path, int64_t line, const char *fmt, ...) {
    if (!err || !errlen) return -1;
    int k = line > 0 ? snprintf(err, errlen, "%s:%" PRId64 ": ", path, line)
                     : snprintf(err, errlen, "%s: ", path);
    if (k < 0 || (size_t)k >= errlen) return -1; /* cut inside the prefix: already terminated */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
    va_end(ap);
    return -1;
}
