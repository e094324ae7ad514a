/* Small shared helpers: host+device marker, checked allocation, fatal errors, timing. */
#ifndef TIMIREC_COMMON_H
#define TIMIREC_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define TMR_HD __host__ __device__ __forceinline__
#else
#define TMR_HD static inline
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Print "timirec: error: <message>" to stderr and exit(1). For conditions that are not
 * the caller's to recover from (allocation failure, broken invariants). Input errors are
 * returned as messages by the modules that read input, so tests can check them. */
#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 1, 2)))
#endif
void tmr_fatal(const char *fmt, ...);

void *tmr_malloc_at(size_t n, const char *file, int line);
void *tmr_calloc_at(size_t count, size_t size, const char *file, int line);
void *tmr_zeroed_resident_at(size_t count, size_t size, const char *file, int line);
void *tmr_realloc_at(void *p, size_t n, const char *file, int line);
#define tmr_malloc(n) tmr_malloc_at((n), __FILE__, __LINE__)
#define tmr_calloc(c, s) tmr_calloc_at((c), (s), __FILE__, __LINE__)
/* Zeros written now, not mapped on first touch: for the optimiser's large tables, whose rows a
 * sparse update touches at random (one page fault per page in the first steps otherwise). */
#define tmr_zeroed_resident(c, s) tmr_zeroed_resident_at((c), (s), __FILE__, __LINE__)
#define tmr_realloc(p, n) tmr_realloc_at((p), (n), __FILE__, __LINE__)

/* count * size with an overflow check (fatal on overflow). */
size_t tmr_mul_size(size_t count, size_t size);

/* Monotonic wall clock in seconds. */
double tmr_now(void);

/* Flush subnormal floats to zero (x86 FTZ + DAZ) on the calling thread and on every thread of
 * an OpenMP team of the current size. A GRU gradient that decays through many steps reaches
 * subnormals, which x86 computes up to 100 times slower: the backward at history 200 ran 10
 * times slower without this (bench_ops). Values under 1.2e-38 become 0: no effect on training.
 * A no-op on other architectures. The float model step calls it. */
void tmr_flush_subnormals(void);

/* snprintf into err (if non-NULL) and return -1: the error convention of input readers. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
int tmr_error(char *err, size_t errlen, const char *fmt, ...);

/* A malloc'd copy of s[0..n) ending in 0; a malloc'd printf result. Fatal when out of memory. */
char *tmr_strndup(const char *s, size_t n);
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
char *tmr_strf(const char *fmt, ...);

/* mkdir -p of the folder holding `path` (nothing when it has no folder part). 0 or -1. */
int tmr_make_parent_dirs(const char *path, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
