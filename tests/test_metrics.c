/* Ranking metrics: hand-computed ranks and HR/NDCG/MRR values (ties against the target, NaN
 * target, infinities, rank 1, rank beyond every k), ranks against a sort-based brute force on
 * random score matrices full of ties, the full-catalog rank against a brute force with random
 * excluded sets, the --metric/--topk parser's errors and the reference's result format. */
#include "test_util.h"
#include "timirec/metrics.h"
#include "timirec/rng.h"

#include <stdint.h>

static const uint64_t SEED = 0x5eed0fa11ull;

/* ---- the brute force: sort candidate indices, find the target's position ----------------- */

static const float *g_row; /* the row qsort compares in; the target is index g_target */
static int64_t g_target;

/* Score descending; NaN below every number; among equal scores the target comes last. */
static int cmp_cand(const void *pa, const void *pb) {
    int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
    float sa = g_row[a], sb = g_row[b];
    int na = isnan(sa) != 0, nb = isnan(sb) != 0;
    if (na != nb) return na - nb;
    if (!na) {
        if (sa > sb) return -1;
        if (sa < sb) return 1;
    }
    if (a == g_target) return 1;
    if (b == g_target) return -1;
    return (a > b) - (a < b);
}

/* 1-based position of candidate `target` after sorting row[0 .. n). */
static int64_t brute_rank(const float *row, int64_t n, int64_t target) {
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    g_row = row;
    g_target = target;
    qsort(idx, (size_t)n, sizeof *idx, cmp_cand);
    int64_t pos = -1;
    for (int64_t i = 0; i < n; i++)
        if (idx[i] == target) pos = i;
    free(idx);
    return pos + 1;
}

/* A score from a small palette, so that ties are common; now and then NaN or an infinity. */
static float draw_score(uint32_t epoch, uint64_t index) {
    static const float palette[6] = {-1.0f, 0.0f, 0.25f, 0.5f, 1.0f, 3.0f};
    uint32_t u = rng_u32(SEED, RNG_TEST, epoch, index, 0);
    switch (u % 32u) {
    case 0: return NAN;
    case 1: return -INFINITY;
    case 2: return INFINITY;
    default: return palette[(u >> 5) % 6u];
    }
}

/* ---- hand-computed cases ------------------------------------------------------------------- */

static void test_hand(void) {
    /* Ties count against the target: 0.9 and the other 0.5 are ahead; 0.1, NaN, -inf are not. */
    float tie[6] = {0.5f, 0.9f, 0.5f, 0.1f, NAN, -INFINITY};
    CHECK(metrics_rank(tie, 6) == 3, "tie rank %lld", (long long)metrics_rank(tie, 6));
    /* NaN target: worst rank. */
    float nan_t[3] = {NAN, 1.0f, 2.0f};
    CHECK(metrics_rank(nan_t, 3) == 3, "nan target %lld", (long long)metrics_rank(nan_t, 3));
    float nan_all[4] = {NAN, NAN, NAN, -INFINITY};
    CHECK(metrics_rank(nan_all, 4) == 4, "nan target among nans %lld", (long long)metrics_rank(nan_all, 4));
    /* -inf candidates never beat a finite target; equal infinities tie against the target. */
    float neg[4] = {-1e30f, -INFINITY, -INFINITY, -INFINITY};
    CHECK(metrics_rank(neg, 4) == 1, "-inf others %lld", (long long)metrics_rank(neg, 4));
    float neg_t[4] = {-INFINITY, -INFINITY, 0.0f, NAN};
    CHECK(metrics_rank(neg_t, 4) == 3, "-inf target %lld", (long long)metrics_rank(neg_t, 4));
    float pos_t[3] = {INFINITY, INFINITY, 1e30f};
    CHECK(metrics_rank(pos_t, 3) == 2, "+inf target %lld", (long long)metrics_rank(pos_t, 3));
    /* Rank 1, and the single-candidate row. */
    float first[3] = {2.0f, 1.0f, 1.5f};
    CHECK(metrics_rank(first, 3) == 1, "rank 1 %lld", (long long)metrics_rank(first, 3));
    float one[1] = {NAN};
    CHECK(metrics_rank(one, 1) == 1, "one candidate %lld", (long long)metrics_rank(one, 1));

    /* Five users with ranks 1, 3, 5, 6 and 60 (beyond every k), the rows built by hand. */
    float r5[8] = {0.2f, 0.3f, 0.9f, 0.2f, 0.2f, 0.1f, -INFINITY, NAN}; /* 0.3 0.9 0.2 0.2 */
    float r6[7] = {1.0f, 2.0f, 2.0f, 2.0f, 2.0f, 1.0f, 0.5f};            /* 4 x 2.0, one 1.0 */
    float r60[70];
    for (int i = 0; i < 70; i++) r60[i] = i < 60 ? 1.0f : 0.5f;          /* 59 ties ahead */
    r60[0] = 1.0f;
    int64_t ranks[5] = {metrics_rank(first, 3), metrics_rank(tie, 6), metrics_rank(r5, 8),
                        metrics_rank(r6, 7), metrics_rank(r60, 70)};
    int64_t want_ranks[5] = {1, 3, 5, 6, 60};
    for (int i = 0; i < 5; i++)
        CHECK(ranks[i] == want_ranks[i], "user %d rank %lld want %lld", i, (long long)ranks[i],
              (long long)want_ranks[i]);

    /* HR@k = hits / 5; NDCG@k = sum over hits of 1/log2(rank+1) / 5, with 1/log2(2) = 1,
     * 1/log2(4) = 0.5, 1/log2(6) = 0.386852807234541586, 1/log2(7) = 0.356207187108022176;
     * MRR@k = sum over hits of 1/rank / 5. */
    const double tol = 1e-12;
    CHECK_CLOSE(metrics_value(METRIC_HR, 1, ranks, 5), 0.2, tol);
    CHECK_CLOSE(metrics_value(METRIC_HR, 5, ranks, 5), 0.6, tol);
    CHECK_CLOSE(metrics_value(METRIC_HR, 10, ranks, 5), 0.8, tol);
    CHECK_CLOSE(metrics_value(METRIC_HR, 50, ranks, 5), 0.8, tol);
    CHECK_CLOSE(metrics_value(METRIC_HR, 60, ranks, 5), 1.0, tol);
    CHECK_CLOSE(metrics_value(METRIC_NDCG, 1, ranks, 5), 0.2, tol);
    CHECK_CLOSE(metrics_value(METRIC_NDCG, 5, ranks, 5), 0.377370561446908317, tol);
    CHECK_CLOSE(metrics_value(METRIC_NDCG, 10, ranks, 5), 0.448611998868512752, tol);
    CHECK_CLOSE(metrics_value(METRIC_MRR, 1, ranks, 5), 0.2, tol);
    CHECK_CLOSE(metrics_value(METRIC_MRR, 5, ranks, 5), 0.306666666666666667, tol);
    CHECK_CLOSE(metrics_value(METRIC_MRR, 10, ranks, 5), 0.34, tol);
    CHECK_CLOSE(metrics_value(METRIC_MRR, 50, ranks, 5), 0.34, tol);
    CHECK(metrics_value(METRIC_NDCG, 5, ranks, 0) == 0.0, "empty mean is 0");

    /* metrics_compute's layout values[m * n_topk + t], through a parsed spec. */
    metric_spec_t spec;
    char err[256] = "";
    CHECK(metrics_parse("ndcg, HR ,mrr", "10,5", &spec, err, sizeof err) == 0, "parse: %s", err);
    double values[METRICS_MAX_KINDS * METRICS_MAX_TOPK];
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) values[i] = NAN; /* poison */
    metrics_compute(&spec, ranks, 5, values);
    CHECK_CLOSE(values[0 * 2 + 0], 0.448611998868512752, tol); /* NDCG@10 */
    CHECK_CLOSE(values[0 * 2 + 1], 0.377370561446908317, tol); /* NDCG@5 */
    CHECK_CLOSE(values[1 * 2 + 0], 0.8, tol);                  /* HR@10 */
    CHECK_CLOSE(values[1 * 2 + 1], 0.6, tol);                  /* HR@5 */
    CHECK_CLOSE(values[2 * 2 + 0], 0.34, tol);                 /* MRR@10 */
    CHECK_CLOSE(values[2 * 2 + 1], 0.306666666666666667, tol); /* MRR@5 */

    /* The reference's format: topk ascending, then HR < MRR < NDCG. */
    char out[512];
    int len = metrics_format(&spec, values, out, sizeof out);
    const char *want = "HR@5:0.6000,MRR@5:0.3067,NDCG@5:0.3774,HR@10:0.8000,MRR@10:0.3400,"
                       "NDCG@10:0.4486";
    CHECK(strcmp(out, want) == 0, "format '%s' want '%s'", out, want);
    CHECK(len == (int)strlen(want), "format length %d", len);
    /* Truncated to outlen - 1, still a prefix. */
    char small[12];
    len = metrics_format(&spec, values, small, sizeof small);
    CHECK(len == 11 && strncmp(small, want, 11) == 0 && small[11] == '\0', "truncated '%s' %d", small, len);
    /* Dev evaluation at the first topk only: a spec with n_topk = 1. */
    metric_spec_t dev = spec;
    dev.n_topk = 1;
    double dev_values[METRICS_MAX_KINDS];
    metrics_compute(&dev, ranks, 5, dev_values);
    metrics_format(&dev, dev_values, out, sizeof out);
    CHECK(strcmp(out, "HR@10:0.8000,MRR@10:0.3400,NDCG@10:0.4486") == 0, "dev format '%s'", out);

    char name[32];
    metrics_main_name(&spec, name, sizeof name);
    CHECK(strcmp(name, "NDCG@10") == 0, "main name '%s'", name);
    CHECK(strcmp(metrics_kind_name(METRIC_MRR), "MRR") == 0 && strcmp(metrics_kind_name(7), "?") == 0,
          "kind names");
}

/* ---- ranks against the brute force -------------------------------------------------------- */

static void test_rank_rows_random(void) {
    static const int64_t shapes[][2] = {{1, 1}, {5, 1}, {7, 2}, {50, 3}, {200, 6},
                                        {300, 101}, {64, 1000}, {4000, 17}};
    const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
    metric_spec_t spec;
    char err[256] = "";
    CHECK(metrics_parse("NDCG,HR,MRR", "1,5,10,20,50", &spec, err, sizeof err) == 0, "parse: %s", err);
    for (int s = 0; s < n_shapes; s++) {
        int64_t rows = shapes[s][0], cand = shapes[s][1];
        float *scores = malloc((size_t)(rows * cand) * sizeof *scores);
        int64_t *ranks = malloc((size_t)rows * sizeof *ranks);
        int64_t *want = malloc((size_t)rows * sizeof *want);
        for (int64_t i = 0; i < rows * cand; i++) scores[i] = draw_score((uint32_t)s, (uint64_t)i);
        for (int64_t r = 0; r < rows; r++) ranks[r] = -7; /* poison */
        metrics_rank_rows(scores, rows, cand, ranks);
        int bad = 0, ties = 0;
        for (int64_t r = 0; r < rows; r++) {
            const float *row = scores + r * cand;
            want[r] = brute_rank(row, cand, 0);
            for (int64_t j = 1; j < cand; j++) ties += row[j] == row[0];
            if (ranks[r] != want[r] || metrics_rank(row, cand) != want[r]) {
                if (bad++ < 5)
                    fprintf(stderr, "shape %lldx%lld row %lld: rank %lld want %lld\n", (long long)rows,
                            (long long)cand, (long long)r, (long long)ranks[r], (long long)want[r]);
            }
        }
        CHECK(bad == 0, "shape %lldx%lld: %d rows differ from the brute force", (long long)rows,
              (long long)cand, bad);
        CHECK(cand < 6 || ties > 0, "shape %lldx%lld drew no ties", (long long)rows, (long long)cand);

        /* The metric means against their definitions, summed here from the brute-force ranks. */
        double values[METRICS_MAX_KINDS * METRICS_MAX_TOPK];
        metrics_compute(&spec, ranks, rows, values);
        for (int t = 0; t < spec.n_topk; t++) {
            int k = spec.topk[t];
            double hr = 0, ndcg = 0, mrr = 0;
            for (int64_t r = 0; r < rows; r++) {
                if (want[r] > k) continue;
                hr += 1.0;
                ndcg += 1.0 / log2((double)want[r] + 1.0);
                mrr += 1.0 / (double)want[r];
            }
            CHECK_CLOSE(values[0 * spec.n_topk + t], ndcg / (double)rows, 1e-12);
            CHECK_CLOSE(values[1 * spec.n_topk + t], hr / (double)rows, 1e-12);
            CHECK_CLOSE(values[2 * spec.n_topk + t], mrr / (double)rows, 1e-12);
        }
        free(scores);
        free(ranks);
        free(want);
    }
}

/* ---- the full-catalog rank against the brute force ---------------------------------------- */

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Brute force: the candidate list [target, every ranked other item], then the sort. */
static int64_t brute_rank_all(const float *item_scores, int32_t n_items, int32_t target,
                              const int32_t *excluded, int64_t n_excluded) {
    unsigned char *skip = calloc((size_t)n_items, 1);
    for (int64_t e = 0; e < n_excluded; e++)
        if (excluded[e] >= 0 && excluded[e] < n_items) skip[excluded[e]] = 1;
    float *cand = malloc((size_t)n_items * sizeof *cand);
    int64_t n = 0;
    cand[n++] = item_scores[target];
    for (int32_t i = 1; i < n_items; i++)
        if (i != target && !skip[i]) cand[n++] = item_scores[i];
    int64_t r = brute_rank(cand, n, 0);
    free(skip);
    free(cand);
    return r;
}

static void test_rank_all_random(void) {
    static const int32_t sizes[] = {2, 3, 5, 17, 100, 1000, 5000};
    const int n_sizes = (int)(sizeof sizes / sizeof sizes[0]);
    int32_t *excluded = malloc(12000 * sizeof *excluded);
    uint64_t draw = 0;
    int cases = 0, bad = 0, target_excluded = 0;
    for (int s = 0; s < n_sizes; s++) {
        int32_t n_items = sizes[s];
        float *scores = malloc((size_t)n_items * sizeof *scores);
        for (int trial = 0; trial < 40; trial++) {
            for (int32_t i = 0; i < n_items; i++)
                scores[i] = draw_score(100u + (uint32_t)s, (uint64_t)trial * 100000u + (uint64_t)i);
            scores[0] = INFINITY; /* the padding row must be ignored */
            uint32_t u = rng_u32(SEED, RNG_TEST, 200u + (uint32_t)s, (uint64_t)trial, 0);
            int32_t target = 1 + (int32_t)(u % (uint32_t)(n_items - 1));
            /* Up to about 1.2 * n_items excluded items, some outside 1..n_items-1, duplicates
             * allowed; in a third of the trials the target itself is excluded; in one trial
             * everything is. */
            int64_t n_ex = (int64_t)(rng_u32(SEED, RNG_TEST, 300u + (uint32_t)s, (uint64_t)trial, 0) %
                                     (uint32_t)(n_items + n_items / 5 + 1));
            for (int64_t e = 0; e < n_ex; e++)
                excluded[e] = (int32_t)(rng_u32(SEED, RNG_TEST, 400u, draw++, 0) % (uint32_t)(n_items + 3)) - 1;
            if (trial % 3 == 0) excluded[n_ex++] = target;
            if (trial == 1) {
                n_ex = 0;
                for (int32_t i = 0; i < n_items; i++) excluded[n_ex++] = i;
            }
            qsort(excluded, (size_t)n_ex, sizeof *excluded, cmp_i32);
            for (int64_t e = 0; e < n_ex; e++) target_excluded += excluded[e] == target;

            int64_t got = metrics_rank_all(scores, n_items, target, excluded, n_ex);
            int64_t want = brute_rank_all(scores, n_items, target, excluded, n_ex);
            cases++;
            if (got != want && bad++ < 5)
                fprintf(stderr, "n_items %d target %d (score %g) n_excluded %lld: rank %lld want %lld\n",
                        (int)n_items, (int)target, (double)scores[target], (long long)n_ex,
                        (long long)got, (long long)want);
            if (trial == 1) CHECK(got == 1, "everything excluded: rank %lld", (long long)got);

            /* With nothing excluded the full rank equals metrics_rank over [target, 1..]. */
            if (trial == 2) {
                int64_t r0 = metrics_rank_all(scores, n_items, target, NULL, 0);
                float *row = malloc((size_t)n_items * sizeof *row);
                int64_t n = 0;
                row[n++] = scores[target];
                for (int32_t i = 1; i < n_items; i++)
                    if (i != target) row[n++] = scores[i];
                CHECK(r0 == metrics_rank(row, n), "no exclusions: %lld vs %lld", (long long)r0,
                      (long long)metrics_rank(row, n));
                free(row);
            }
        }
        free(scores);
    }
    CHECK(bad == 0, "%d of %d full-catalog ranks differ from the brute force", bad, cases);
    CHECK(target_excluded > 0, "no trial excluded the target");

    /* Hand case: items 1..6, target 3 excluded and tied with item 5; item 2 (higher) excluded. */
    float sc[7] = {INFINITY, 0.1f, 0.9f, 0.5f, 0.7f, 0.5f, NAN};
    int32_t ex[3] = {2, 3, 3};
    CHECK(metrics_rank_all(sc, 7, 3, ex, 3) == 3, "hand full rank %lld",
          (long long)metrics_rank_all(sc, 7, 3, ex, 3)); /* 0.7 and the tie 0.5 ahead */
    sc[3] = NAN; /* NaN target: worst of the 5 ranked (1, 3, 4, 5, 6) */
    CHECK(metrics_rank_all(sc, 7, 3, ex, 3) == 5, "hand NaN full rank %lld",
          (long long)metrics_rank_all(sc, 7, 3, ex, 3));
    free(excluded);
}

/* ---- parsing ----------------------------------------------------------------------------- */

static void parse_fails(const char *metric, const char *topk, const char *needle1, const char *needle2) {
    metric_spec_t spec;
    memset(&spec, 0x5a, sizeof spec);
    metric_spec_t before = spec;
    char err[512] = "";
    int rc = metrics_parse(metric, topk, &spec, err, sizeof err);
    CHECK(rc == -1, "parse('%s', '%s') accepted", metric ? metric : "(null)", topk ? topk : "(null)");
    CHECK(memcmp(&spec, &before, sizeof spec) == 0, "spec written on failure");
    CHECK(strstr(err, needle1) != NULL, "error '%s' lacks '%s'", err, needle1);
    CHECK(strstr(err, needle2) != NULL, "error '%s' lacks '%s'", err, needle2);
}

static void test_parse(void) {
    metric_spec_t spec;
    char err[512] = "";
    CHECK(metrics_parse(" ndcg ,Hr", " 5, 10 ,20,\t50 ", &spec, err, sizeof err) == 0, "parse: %s", err);
    CHECK(spec.n_kind == 2 && spec.kind[0] == METRIC_NDCG && spec.kind[1] == METRIC_HR, "kinds");
    CHECK(spec.n_topk == 4 && spec.topk[0] == 5 && spec.topk[1] == 10 && spec.topk[2] == 20 &&
              spec.topk[3] == 50,
          "topk");
    char name[16];
    metrics_main_name(&spec, name, sizeof name);
    CHECK(strcmp(name, "NDCG@5") == 0, "main name '%s'", name);
    CHECK(metrics_parse("MRR", "+7", &spec, err, sizeof err) == 0 && spec.n_kind == 1 &&
              spec.kind[0] == METRIC_MRR && spec.n_topk == 1 && spec.topk[0] == 7,
          "single elements: %s", err);
    /* Sixteen values is the maximum, and fine. */
    CHECK(metrics_parse("HR", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16", &spec, err, sizeof err) == 0 &&
              spec.n_topk == 16 && spec.topk[15] == 16,
          "16 topk: %s", err);

    parse_fails("NDCG,FOO", "5", "'FOO'", "HR, NDCG, MRR");
    parse_fails("NDCG,HR@5", "5", "'HR@5'", "HR, NDCG, MRR");
    parse_fails("", "5", "empty", "HR, NDCG, MRR");
    parse_fails("  ", "5", "empty", "HR, NDCG, MRR");
    parse_fails(NULL, "5", "--metric", "HR, NDCG, MRR");
    parse_fails("NDCG,,HR", "5", "element 2", "HR, NDCG, MRR");
    parse_fails("NDCG,", "5", "element 2", "HR, NDCG, MRR");
    parse_fails("HR,NDCG,MRR,HR", "5", "at most 3", "'HR'");
    parse_fails("NDCG", "5,0", "'0'", "positive integers");
    parse_fails("NDCG", "5,-3", "'-3'", "positive integers");
    parse_fails("NDCG", "abc", "'abc'", "positive integers");
    parse_fails("NDCG", "5,10x", "'10x'", "positive integers");
    parse_fails("NDCG", "5,1 0", "'1 0'", "positive integers");
    parse_fails("NDCG", "5,99999999999", "'99999999999'", "positive integers");
    parse_fails("NDCG", "", "empty", "positive integers");
    parse_fails("NDCG", "5,,10", "element 2", "positive integers");
    parse_fails("NDCG", NULL, "--topk", "positive integers");
    parse_fails("NDCG", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17", "'17'", "at most 16");
}

/* Repeated topk or metric names print once, as in the reference's dict. */
static void test_format_duplicates(void) {
    metric_spec_t spec;
    char err[256] = "";
    CHECK(metrics_parse("HR,NDCG,HR", "10,5,10", &spec, err, sizeof err) == 0, "parse: %s", err);
    int64_t ranks[4] = {1, 2, 7, 11};
    double values[METRICS_MAX_KINDS * METRICS_MAX_TOPK];
    metrics_compute(&spec, ranks, 4, values);
    char out[256];
    metrics_format(&spec, values, out, sizeof out);
    /* HR@5 = 2/4; NDCG@5 = (1 + 1/log2 3)/4 = 0.4077; HR@10 = 3/4;
     * NDCG@10 = (1 + 0.6309298 + 1/log2 8 = 0.3333333)/4 = 0.4911. */
    const char *want = "HR@5:0.5000,NDCG@5:0.4077,HR@10:0.7500,NDCG@10:0.4911";
    CHECK(strcmp(out, want) == 0, "format '%s' want '%s'", out, want);
}

int main(void) {
    test_hand();
    test_rank_rows_random();
    test_rank_all_random();
    test_parse();
    test_format_duplicates();
    return tu_finish("test_metrics");
}
