/* Shared bits of the benchmarks: the device name for result rows, medians. */
#ifndef TIMIREC_BENCH_UTIL_H
#define TIMIREC_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* "Intel(R) Xeon(R) Processor x2" from /proc/cpuinfo (commas removed: it goes into CSV). */
static inline void bench_cpu_name(char *out, size_t n) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    snprintf(out, n, "unknown CPU");
    if (f) {
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "model name", 10) == 0) {
                char *v = strchr(line, ':');
                if (v) {
                    v += 2;
                    v[strcspn(v, "\n")] = 0;
                    snprintf(out, n, "%s", v);
                }
                break;
            }
        fclose(f);
    }
    size_t len = strlen(out);
    snprintf(out + len, n - len, " x%ld", sysconf(_SC_NPROCESSORS_ONLN));
    for (char *p = out; *p; p++)
        if (*p == ',') *p = ' ';
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v). */
static inline double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif
