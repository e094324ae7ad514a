/* Ranking metrics: ranks (ties against the target), HR/NDCG/MRR means, the --metric/--topk
 * parser and the reference's result format. See include/timirec/metrics.h. */
#include "timirec/metrics.h"

#include "timirec/common.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const kind_names[METRICS_MAX_KINDS] = {"HR", "NDCG", "MRR"};

const char *metrics_kind_name(int kind) {
    if (kind < 0 || kind >= METRICS_MAX_KINDS) return "?";
    return kind_names[kind];
}

/* ---- parsing --------------------------------------------------------------------------- */

#define METRIC_ACCEPTED "accepted: HR, NDCG, MRR (any case), comma-separated, e.g. NDCG,HR"
#define TOPK_ACCEPTED "accepted: positive integers, comma-separated, e.g. 5,10,20,50"

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static char ascii_upper(char c) {
    return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

/* Element [b, e) of a comma list with surrounding spaces trimmed; returns the end of the
 * element (the comma or the terminating NUL). */
static const char *next_element(const char *p, const char **b, const char **e) {
    const char *end = p;
    while (*end && *end != ',') end++;
    const char *s = p, *t = end;
    while (s < t && is_space(*s)) s++;
    while (t > s && is_space(t[-1])) t--;
    *b = s;
    *e = t;
    return end;
}

static int match_kind(const char *b, const char *e) {
    size_t len = (size_t)(e - b);
    for (int k = 0; k < METRICS_MAX_KINDS; k++) {
        const char *name = kind_names[k];
        if (strlen(name) != len) continue;
        size_t i = 0;
        while (i < len && ascii_upper(b[i]) == name[i]) i++;
        if (i == len) return k;
    }
    return -1;
}

/* A positive decimal integer that fits an int ("+5" allowed, as Python's int() does). */
static int parse_positive(const char *b, const char *e, int *out) {
    const char *p = b;
    if (p < e && *p == '+') p++;
    if (p == e) return -1;
    long long v = 0;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
        if (v > INT_MAX) return -1;
    }
    if (v <= 0) return -1;
    *out = (int)v;
    return 0;
}

int metrics_parse(const char *metric_list, const char *topk_list, metric_spec_t *spec,
                  char *err, size_t errlen) {
    metric_spec_t s;
    memset(&s, 0, sizeof s);

    if (!metric_list) return tmr_error(err, errlen, "--metric: no value (" METRIC_ACCEPTED ")");
    const char *p = metric_list;
    for (int idx = 1;; idx++) {
        const char *b, *e;
        const char *end = next_element(p, &b, &e);
        if (b == e) {
            if (idx == 1 && !*end)
                return tmr_error(err, errlen, "--metric: empty list '%s' (" METRIC_ACCEPTED ")",
                                 metric_list);
            return tmr_error(err, errlen, "--metric: element %d of '%s' is empty (" METRIC_ACCEPTED ")",
                             idx, metric_list);
        }
        int k = match_kind(b, e);
        if (k < 0)
            return tmr_error(err, errlen, "--metric: unknown metric '%.*s' (" METRIC_ACCEPTED ")",
                             (int)(e - b), b);
        if (s.n_kind == METRICS_MAX_KINDS)
            return tmr_error(err, errlen, "--metric: '%.*s' is one metric too many: at most %d in '%s'",
                             (int)(e - b), b, METRICS_MAX_KINDS, metric_list);
        s.kind[s.n_kind++] = k;
        if (!*end) break;
        p = end + 1;
    }

    if (!topk_list) return tmr_error(err, errlen, "--topk: no value (" TOPK_ACCEPTED ")");
    p = topk_list;
    for (int idx = 1;; idx++) {
        const char *b, *e;
        const char *end = next_element(p, &b, &e);
        if (b == e) {
            if (idx == 1 && !*end)
                return tmr_error(err, errlen, "--topk: empty list '%s' (" TOPK_ACCEPTED ")", topk_list);
            return tmr_error(err, errlen, "--topk: element %d of '%s' is empty (" TOPK_ACCEPTED ")",
                             idx, topk_list);
        }
        int v;
        if (parse_positive(b, e, &v) != 0)
            return tmr_error(err, errlen, "--topk: '%.*s' is not a positive integer (" TOPK_ACCEPTED ")",
                             (int)(e - b), b);
        if (s.n_topk == METRICS_MAX_TOPK)
            return tmr_error(err, errlen, "--topk: '%.*s' is one value too many: at most %d in '%s'",
                             (int)(e - b), b, METRICS_MAX_TOPK, topk_list);
        s.topk[s.n_topk++] = v;
        if (!*end) break;
        p = end + 1;
    }

    *spec = s;
    return 0;
}

void metrics_main_name(const metric_spec_t *spec, char *out, size_t outlen) {
    if (!out || outlen == 0) return;
    if (spec->n_kind < 1 || spec->n_topk < 1) {
        out[0] = '\0';
        return;
    }
    snprintf(out, outlen, "%s@%d", metrics_kind_name(spec->kind[0]), spec->topk[0]);
}

/* ---- ranks ----------------------------------------------------------------------------- */

int64_t metrics_rank(const float *scores, int64_t n_cand) {
    if (n_cand < 1) tmr_fatal("metrics_rank: %lld candidates (need at least 1)", (long long)n_cand);
    const float t = scores[0];
    if (isnan(t)) return n_cand;
    int64_t beat = 0;
    for (int64_t i = 1; i < n_cand; i++) beat += scores[i] >= t; /* NaN: false, not counted */
    return 1 + beat;
}

int64_t metrics_rank_all(const float *item_scores, int32_t n_items, int32_t target,
                         const int32_t *excluded, int64_t n_excluded) {
    if (target < 1 || target >= n_items)
        tmr_fatal("metrics_rank_all: target %d outside items 1..%d", (int)target, (int)n_items - 1);
    const float t = item_scores[target];
    /* Walk the runs of items between consecutive excluded ones: [lo, hi) is ranked whole. */
    int64_t beat = 0, ranked = 0, e = 0;
    int target_ranked = 0;
    int32_t lo = 1;
    while (lo < n_items) {
        while (e < n_excluded && excluded[e] < lo) e++;
        int32_t hi = (e < n_excluded && excluded[e] < n_items) ? excluded[e] : n_items;
        int64_t run_beat = 0;
        for (int32_t i = lo; i < hi; i++) run_beat += item_scores[i] >= t;
        beat += run_beat;
        ranked += hi - lo;
        if (target >= lo && target < hi) target_ranked = 1;
        if (hi == n_items) break;
        lo = hi + 1; /* skip the excluded item hi */
    }
    /* The target is ranked even when excluded; it never counts against itself. */
    int64_t others = ranked - target_ranked;
    if (isnan(t)) return others + 1;
    if (target_ranked) beat -= 1; /* t >= t counted the target itself */
    return beat + 1;
}

void metrics_rank_rows(const float *scores, int64_t n_rows, int64_t n_cand, int64_t *ranks) {
    if (n_rows <= 0) return;
    if (n_cand < 1) tmr_fatal("metrics_rank_rows: %lld candidates (need at least 1)", (long long)n_cand);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n_rows; r++) ranks[r] = metrics_rank(scores + r * n_cand, n_cand);
}

/* ---- metric values --------------------------------------------------------------------- */

double metrics_value(int kind, int k, const int64_t *ranks, int64_t n) {
    if (kind < 0 || kind >= METRICS_MAX_KINDS) tmr_fatal("metrics_value: unknown metric kind %d", kind);
    if (n <= 0) return 0.0;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        int64_t r = ranks[i];
        if (r < 1 || r > k) continue;
        switch (kind) {
        case METRIC_HR: sum += 1.0; break;
        case METRIC_NDCG: sum += 1.0 / log2((double)r + 1.0); break;
        default: sum += 1.0 / (double)r; break; /* METRIC_MRR */
        }
    }
    return sum / (double)n;
}

void metrics_compute(const metric_spec_t *spec, const int64_t *ranks, int64_t n, double *values) {
    for (int m = 0; m < spec->n_kind; m++)
        for (int t = 0; t < spec->n_topk; t++)
            values[m * spec->n_topk + t] = metrics_value(spec->kind[m], spec->topk[t], ranks, n);
}

/* ---- the reference's format ------------------------------------------------------------ */

int metrics_format(const metric_spec_t *spec, const double *values, char *out, size_t outlen) {
    if (!out || outlen == 0) return 0;
    out[0] = '\0';
    size_t len = 0;
    /* Kinds in alphabetical order of their names. */
    static const int alpha[METRICS_MAX_KINDS] = {METRIC_HR, METRIC_MRR, METRIC_NDCG};
    int prev_k = 0; /* topks are positive: 0 is below all of them */
    for (;;) {
        /* The next distinct topk above prev_k, and its first position in the spec. */
        int t_sel = -1;
        for (int t = 0; t < spec->n_topk; t++)
            if (spec->topk[t] > prev_k && (t_sel < 0 || spec->topk[t] < spec->topk[t_sel])) t_sel = t;
        if (t_sel < 0) break;
        prev_k = spec->topk[t_sel];
        for (int a = 0; a < METRICS_MAX_KINDS; a++) {
            int m_sel = -1;
            for (int m = 0; m < spec->n_kind && m_sel < 0; m++)
                if (spec->kind[m] == alpha[a]) m_sel = m;
            if (m_sel < 0) continue;
            int w = snprintf(out + len, outlen - len, "%s%s@%d:%.4f", len ? "," : "",
                             metrics_kind_name(alpha[a]), prev_k,
                             values[m_sel * spec->n_topk + t_sel]);
            if (w < 0) return (int)len;
            if ((size_t)w >= outlen - len) { /* truncated */
                len = outlen - 1;
                return (int)len;
            }
            len += (size_t)w;
        }
    }
    return (int)len;
}

int metrics_write_per_instance(const char *path, const metric_spec_t *spec, const int32_t *users,
                               const int32_t *items, const int64_t *inst_row, const int64_t *ranks,
                               int64_t n, char *err, size_t errlen) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return tmr_error(err, errlen, "--per_user_metrics: path too long: %s", path);
    if (tmr_make_parent_dirs(path, err, errlen)) return -1;
    FILE *f = fopen(tmp, "w");
    if (!f) return tmr_error(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
    fprintf(f, "user_id\titem_id\trank");
    for (int m = 0; m < spec->n_kind; m++)
        for (int t = 0; t < spec->n_topk; t++)
            fprintf(f, "\t%s@%d", metrics_kind_name(spec->kind[m]), spec->topk[t]);
    fputc('\n', f);
    for (int64_t i = 0; i < n; i++) {
        const int64_t r = inst_row[i];
        fprintf(f, "%d\t%d\t%lld", (int)users[r], (int)items[r], (long long)ranks[i]);
        for (int m = 0; m < spec->n_kind; m++)
            for (int t = 0; t < spec->n_topk; t++)
                fprintf(f, "\t%.6f", metrics_value(spec->kind[m], spec->topk[t], ranks + i, 1));
        fputc('\n', f);
    }
    if (ferror(f) | (fclose(f) != 0) || rename(tmp, path) != 0) {
        remove(tmp);
        return tmr_error(err, errlen, "writing %s failed: %s", path, strerror(errno));
    }
    return 0;
}
