/* Shared bits of the benchmarks: the device name, commit and date for result rows, medians. */
#ifndef TIMIREC_BENCH_UTIL_H
#define TIMIREC_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "timirec/common.h"
#include "timirec/prepare.h"

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

/* The commit of a result row: $TIMIREC_COMMIT (bench/run_bench.sh and gpu_check.sh set it),
 * else `git rev-parse --short HEAD` with "+dirty" for uncommitted changes, else "unknown", so a
 * benchmark run by hand never writes a row nobody can place. */
static inline const char *bench_commit(void) {
    static char commit[64];
    const char *env = getenv("TIMIREC_COMMIT");
    if (env && *env) return env;
    if (commit[0]) return commit;
    snprintf(commit, sizeof commit, "unknown");
    FILE *p = popen("git rev-parse --short HEAD 2>/dev/null", "r");
    if (p) {
        char line[64];
        if (fgets(line, sizeof line, p)) {
            line[strcspn(line, "\n")] = 0;
            if (line[0]) snprintf(commit, sizeof commit, "%s", line);
        }
        pclose(p);
    }
    p = popen("git status --porcelain --untracked-files=no 2>/dev/null", "r");
    if (p) {
        char line[8];
        if (fgets(line, sizeof line, p) && strcmp(commit, "unknown") != 0) {
            size_t len = strlen(commit);
            snprintf(commit + len, sizeof commit - len, "+dirty");
        }
        pclose(p);
    }
    return commit;
}

/* The date of a result row: $TIMIREC_DATE, else today (UTC, ISO 8601). */
static inline const char *bench_date(void) {
    static char date[16];
    const char *env = getenv("TIMIREC_DATE");
    if (env && *env) return env;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y-%m-%d", &tm);
    return date;
}

/* A ceiling bench_device measured (bench/results/device.csv, column `column`, e.g. "d2d_gbps",
 * "sgemm_tflops", "fp32_peak_tflops") for `device`: the last row whose device name is part of
 * `device` or starts with it; 0 when there is none (the caller says what it assumes). */
static inline double bench_device_ceiling(const char *device, const char *column) {
    FILE *f = fopen("bench/results/device.csv", "r");
    if (!f) return 0;
    char line[2048];
    int col = -1;
    double value = 0;
    if (fgets(line, sizeof line, f)) {
        int i = 0;
        for (char *tok = strtok(line, ",\n"); tok; tok = strtok(NULL, ",\n"), i++)
            if (strcmp(tok, column) == 0) col = i;
    }
    while (col >= 0 && fgets(line, sizeof line, f)) {
        char *fields[64];
        int nf = 0;
        for (char *p = line, *q; nf < 64 && p; p = q ? q + 1 : NULL) {
            q = strchr(p, ',');
            if (q) *q = 0;
            fields[nf++] = p;
        }
        if (nf <= col || !fields[0][0]) continue;
        if (strstr(device, fields[0]) || strncmp(fields[0], device, strlen(device)) == 0)
            value = atof(fields[col]);
    }
    fclose(f);
    return value;
}

/* The synthetic MovieLens-1M-scale dataset the data and GPU epoch benchmarks share (6,040 users,
 * 3,706 items, 1,000,209 interactions, histories of at least 20, 1,000 dev/test negatives),
 * written into dir as train/dev/test.csv. Returns 0, or -1 with a message. */
static inline int bench_write_ml1m_synth(const char *dir, char *err, size_t errlen) {
    synth_opts_t so;
    synth_defaults(&so);
    so.n_users = 6040;
    so.n_items = 3706;
    so.n_interactions = 1000209;
    so.min_len = 20;
    so.n_clusters = 40;
    interactions_t x;
    const double t0 = tmr_now();
    if (synth_generate(&so, &x, err, errlen)) return -1;
    const int rc = prepare_write(&x, dir, 1000, 0, err, errlen);
    interactions_free(&x);
    if (rc == 0) printf("generated %s in %.2f s\n", dir, tmr_now() - t0);
    return rc;
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
