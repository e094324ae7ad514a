#include "timirec/common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

void tmr_fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("timirec: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void *tmr_malloc_at(size_t n, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (!p) tmr_fatal("out of memory allocating %zu bytes (%s:%d)", n, file, line);
    return p;
}

void *tmr_calloc_at(size_t count, size_t size, const char *file, int line) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) tmr_fatal("out of memory allocating %zu x %zu bytes (%s:%d)", count, size, file, line);
    return p;
}

void *tmr_zeroed_resident_at(size_t count, size_t size, const char *file, int line) {
    if (size && count > SIZE_MAX / size)
        tmr_fatal("out of memory allocating %zu x %zu bytes (%s:%d)", count, size, file, line);
    void *p = tmr_malloc_at(count * size, file, line);
    memset(p, 0, count * size);
    return p;
}

void *tmr_realloc_at(void *p, size_t n, const char *file, int line) {
    void *q = realloc(p, n ? n : 1);
    if (!q) tmr_fatal("out of memory reallocating to %zu bytes (%s:%d)", n, file, line);
    return q;
}

size_t tmr_mul_size(size_t count, size_t size) {
    if (size != 0 && count > SIZE_MAX / size) tmr_fatal("size overflow: %zu x %zu", count, size);
    return count * size;
}

double tmr_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

char *tmr_strndup(const char *s, size_t n) {
    char *d = tmr_malloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *tmr_strf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) tmr_fatal("bad format \"%s\"", fmt);
    char *s = tmr_malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

int tmr_error(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int tmr_make_parent_dirs(const char *path, char *err, size_t errlen) {
    char *dir = tmr_malloc(strlen(path) + 1);
    strcpy(dir, path);
    char *slash = strrchr(dir, '/');
    int rc = 0;
    if (slash && slash != dir) {
        *slash = '\0';
        /* Each prefix ending at a '/', then the whole folder. */
        for (char *p = dir + 1;; p++) {
            int end = *p == '\0';
            if (*p != '/' && !end) continue;
            *p = '\0';
            if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
                rc = tmr_error(err, errlen, "%s: cannot create folder %s: %s", path, dir,
                               strerror(errno));
                break;
            }
            if (end) break;
            *p = '/';
        }
    }
    free(dir);
    return rc;
}

void tmr_flush_subnormals(void) {
#if defined(__SSE__)
#pragma omp parallel
    _mm_setcsr(_mm_getcsr() | 0x8040); /* FTZ (bit 15) and DAZ (bit 6) */
#endif
}
