/* The CPU top-K (topk.h) against a brute-force sort of every row's full score vector, on random
 * problems of many shapes: k above the number of unseen items, ties (quantised embeddings
 * whose products are exact, so every tie is a real tie), 1..4 interests, excluded lists with
 * duplicates and out-of-range ids, the padding row on and off, rows sharing lists. Also: the
 * per-interest lists merged (ComiRec) equal the max-score list; the full-ranking rank equals
 * metrics_rank_all on the brute-force scores; the output does not depend on the thread count;
 * NaN scores are never returned. */
#include "test_util.h"
#include "timirec/gemm.h"
#include "timirec/metrics.h"
#include "timirec/topk.h"

#include <omp.h>
#include <stdint.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t u32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static int below(int n) { return (int)(u32() % (uint32_t)n); }
/* Never zero: quantised to multiples of 1/4 in +-[0.25, 1] (exact products and sums for small
 * dims), or uniform in +-[0.05, 1]. */
static float value(int quantised) {
    float sign = u32() & 1 ? 1.0f : -1.0f;
    if (quantised) return sign * (float)(1 + below(4)) * 0.25f;
    return sign * (0.05f + 0.95f * (float)(u32() & 0xffffff) / 16777216.0f);
}

typedef struct {
    topk_problem_t p;
    float *vecs, *items;
    int64_t *off;
    int32_t *seen, *index;
} case_t;

static void make_case(case_t *c, int64_t U, int V, int D, int32_t N, int quantised, int pad,
                      int shared_lists) {
    memset(c, 0, sizeof *c);
    c->vecs = malloc(sizeof(float) * (size_t)(U * V * D + 1));
    c->items = malloc(sizeof(float) * (size_t)N * D);
    for (int64_t i = 0; i < U * V * D; i++) c->vecs[i] = value(quantised);
    for (int64_t i = 0; i < (int64_t)N * D; i++) c->items[i] = value(quantised);
    int64_t lists = shared_lists ? 1 + U / 3 : U;
    c->off = malloc(sizeof(int64_t) * (size_t)(lists + 1));
    int64_t cap = lists * (N + 8) + 1;
    c->seen = malloc(sizeof(int32_t) * (size_t)cap);
    c->off[0] = 0;
    for (int64_t l = 0; l < lists; l++) {
        int64_t n = c->off[l];
        int mode = below(5); /* 0: none, 1: a few, 2: most items, 3: every item, 4: duplicates */
        for (int32_t it = -2; it < N + 2; it++) {
            int take = mode == 1 ? below(10) == 0 : mode == 2 ? below(10) != 0 : mode == 3 ? 1
                     : mode == 4 ? below(4) == 0 : 0;
            if (it < 0 || it >= N) take = mode >= 1 && below(2); /* out of range: harmless */
            if (!take) continue;
            c->seen[n++] = it;
            if (mode == 4 && below(2)) c->seen[n++] = it;
        }
        c->off[l + 1] = n;
    }
    if (shared_lists) {
        c->index = malloc(sizeof(int32_t) * (size_t)(U + 1));
        for (int64_t r = 0; r < U; r++) c->index[r] = below((int)lists);
    }
    c->p = (topk_problem_t){U, V, D, c->vecs, N, c->items, c->off, c->seen, c->index, pad};
}

static void free_case(case_t *c) {
    free(c->vecs);
    free(c->items);
    free(c->off);
    free(c->seen);
    free(c->index);
}

static int same_float(float a, float b) {
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
}

/* Compare two (U, k) outputs; returns the number of differing rows (first one printed). */
static int compare(const char *what, int64_t U, int k, const int32_t *ia, const float *sa,
                   const int32_t *ca, const int32_t *ib, const float *sb, const int32_t *cb) {
    int bad = 0;
    for (int64_t r = 0; r < U; r++) {
        int ok = ca[r] == cb[r];
        for (int i = 0; i < k && ok; i++)
            ok = ia[r * k + i] == ib[r * k + i] && same_float(sa[r * k + i], sb[r * k + i]);
        if (!ok && bad++ == 0) {
            fprintf(stderr, "%s: row %lld differs (count %d vs %d)\n", what, (long long)r, ca[r], cb[r]);
            for (int i = 0; i < k && i < 8; i++)
                fprintf(stderr, "  %d: %d %.9g | %d %.9g\n", i, ia[r * k + i], sa[r * k + i],
                        ib[r * k + i], sb[r * k + i]);
        }
    }
    return bad;
}

/* Rows of a list are ordered (score desc, id asc), real items first, padding after. */
static int well_ordered(int64_t U, int k, const int32_t *items, const float *scores, const int32_t *counts) {
    for (int64_t r = 0; r < U; r++) {
        if (counts[r] < 0 || counts[r] > k) return 0;
        for (int i = 0; i < k; i++) {
            if (i >= counts[r]) {
                if (items[r * k + i] != -1 || !isnan(scores[r * k + i])) return 0;
                continue;
            }
            if (isnan(scores[r * k + i]) || items[r * k + i] < 0) return 0;
            if (i > 0) {
                float a = scores[r * k + i - 1], b = scores[r * k + i];
                if (a < b || (a == b && items[r * k + i - 1] >= items[r * k + i])) return 0;
            }
        }
    }
    return 1;
}

static int n_cases = 0;

static void one_case(int64_t U, int V, int D, int32_t N, int k, int quantised, int pad, int shared) {
    case_t c;
    make_case(&c, U, V, D, N, quantised, pad, shared);
    n_cases++;
    size_t n = (size_t)(U * k + 1);
    int32_t *ia = malloc(n * sizeof *ia), *ib = malloc(n * sizeof *ib), *ca = malloc((size_t)(U + 1) * sizeof *ca),
            *cb = malloc((size_t)(U + 1) * sizeof *cb);
    float *sa = malloc(n * sizeof *sa), *sb = malloc(n * sizeof *sb);
    topk_cpu(&c.p, k, ia, sa, ca);
    topk_bruteforce(&c.p, k, ib, sb, cb);
    char what[160];
    snprintf(what, sizeof what, "U=%lld V=%d D=%d N=%d k=%d q=%d pad=%d shared=%d", (long long)U, V,
             D, (int)N, k, quantised, pad, shared);
    CHECK(compare(what, U, k, ia, sa, ca, ib, sb, cb) == 0, "%s: top-k differs from brute force", what);
    CHECK(well_ordered(U, k, ia, sa, ca), "%s: output not in (score desc, id asc) order", what);

    /* Thread count: one thread gives the same bits. */
    int th = omp_get_max_threads();
    omp_set_num_threads(1);
    topk_cpu(&c.p, k, ib, sb, cb);
    omp_set_num_threads(th);
    CHECK(compare(what, U, k, ia, sa, ca, ib, sb, cb) == 0, "%s: 1 thread differs from %d", what, th);

    /* Per-interest lists merged = the max-score list (finite scores). */
    if (V > 1) {
        size_t m = (size_t)(U * V * k + 1);
        int32_t *pi = malloc(m * sizeof *pi), *pc = malloc((size_t)(U * V + 1) * sizeof *pc);
        float *pv = malloc(m * sizeof *pv);
        topk_cpu_per_vec(&c.p, k, pi, pv, pc);
        /* Each per-interest list is the brute force of that interest alone. */
        int32_t *row_index = malloc(sizeof(int32_t) * (size_t)(U * V + 1));
        for (int64_t r = 0; r < U * V; r++) row_index[r] = c.index ? c.index[r / V] : (int32_t)(r / V);
        topk_problem_t single = c.p;
        single.n_rows = U * V;
        single.n_vecs = 1;
        single.seen_index = row_index;
        int32_t *qi = malloc(m * sizeof *qi), *qc = malloc((size_t)(U * V + 1) * sizeof *qc);
        float *qv = malloc(m * sizeof *qv);
        topk_bruteforce(&single, k, qi, qv, qc);
        CHECK(compare(what, U * V, k, pi, pv, pc, qi, qv, qc) == 0, "%s: per-interest lists differ", what);
        topk_merge_lists(U, V, k, pi, pv, pc, k, ib, sb, cb);
        CHECK(compare(what, U, k, ia, sa, ca, ib, sb, cb) == 0, "%s: merged per-interest lists differ from max-score top-k", what);
        free(pi), free(pc), free(pv), free(row_index), free(qi), free(qc), free(qv);
    }

    /* Ranks of random targets = metrics_rank_all on the brute-force score vector. */
    if (N > pad) {
        int32_t *tg = malloc(sizeof(int32_t) * (size_t)(U + 1));
        int64_t *rk = malloc(sizeof(int64_t) * (size_t)(U + 1));
        for (int64_t r = 0; r < U; r++) tg[r] = pad + below(N - pad);
        topk_rank_cpu(&c.p, tg, rk);
        float *s = malloc(sizeof(float) * (size_t)V * N), *m = malloc(sizeof(float) * (size_t)N);
        int bad = 0;
        for (int64_t r = 0; r < U; r++) {
            tmr_sgemm(0, 1, V, N, D, 1.0f, c.vecs + r * V * D, D, c.items, D, 0.0f, s, N);
            for (int32_t j = 0; j < N; j++) {
                m[j] = s[j];
                for (int v = 1; v < V; v++) m[j] = s[(int64_t)v * N + j] > m[j] ? s[(int64_t)v * N + j] : m[j];
            }
            int64_t l = c.index ? c.index[r] : r;
            int64_t want;
            if (pad) {
                want = metrics_rank_all(m, N, tg[r], c.seen + c.off[l], c.off[l + 1] - c.off[l]);
            } else { /* metrics_rank_all skips item 0: rank over items 0..N-1 by hand */
                want = 1;
                for (int32_t j = 0; j < N; j++) {
                    int ex = 0;
                    for (int64_t e = c.off[l]; e < c.off[l + 1]; e++) ex |= c.seen[e] == j;
                    if (j != tg[r] && !ex && m[j] >= m[tg[r]]) want++;
                }
            }
            if (rk[r] != want && bad++ == 0)
                fprintf(stderr, "%s: row %lld target %d rank %lld want %lld\n", what, (long long)r,
                        tg[r], (long long)rk[r], (long long)want);
        }
        CHECK(bad == 0, "%s: %d ranks differ from metrics_rank_all", what, bad);
        free(tg), free(rk), free(s), free(m);
    }
    free(ia), free(ib), free(ca), free(cb), free(sa), free(sb);
    free_case(&c);
}

int main(void) {
    /* Fixed edge shapes. */
    one_case(1, 1, 1, 1, 1, 1, 0, 0);    /* one item */
    one_case(3, 1, 4, 1, 5, 1, 1, 0);    /* only the padding row: nothing to return */
    one_case(5, 2, 3, 7, 20, 1, 1, 0);   /* k far above the catalog */
    one_case(9, 1, 64, 513, 512, 0, 1, 0);  /* tile boundary +1 */
    one_case(70, 2, 64, 1025, 50, 0, 1, 1);
    one_case(130, 1, 16, 700, 1, 1, 1, 0);  /* many blocks, k = 1, ties */
    one_case(40, 3, 8, 2000, 300, 1, 0, 1); /* ties across tiles, big k */
    one_case(17, 4, 70, 1500, 1024, 0, 1, 0);
    /* Random shapes. */
    static const int dims[] = {1, 2, 3, 5, 16, 33, 64};
    for (int t = 0; t < 120; t++) {
        int64_t U = 1 + below(t % 4 == 0 ? 150 : 20);
        int V = 1 + below(4), D = dims[below(7)];
        int32_t N = 1 + below(t % 3 == 0 ? 2500 : 300);
        int k = t % 5 == 0 ? N + below(5) : 1 + below(N < 60 ? N : 60);
        one_case(U, V, D, N, k, below(2), below(4) != 0, below(3) == 0);
    }

    /* NaN: a row whose vectors are NaN returns nothing and ranks its target last. */
    {
        case_t c;
        make_case(&c, 3, 2, 8, 50, 0, 1, 0);
        for (int i = 0; i < 2 * 8; i++) c.vecs[1 * 2 * 8 + i] = NAN;
        c.p.seen_off = NULL; /* nothing excluded: every row has items to return */
        c.p.seen = NULL;
        int32_t items[30], counts[3], tg[3] = {1, 2, 3};
        float scores[30];
        int64_t rk[3];
        topk_cpu(&c.p, 10, items, scores, counts);
        CHECK(counts[1] == 0 && items[10] == -1 && isnan(scores[10]), "NaN row: count %d", counts[1]);
        CHECK(counts[0] > 0 && counts[2] > 0, "rows next to a NaN row lost items: %d %d", counts[0], counts[2]);
        topk_rank_cpu(&c.p, tg, rk);
        CHECK(rk[1] == 49, "NaN target: rank %lld want 49 (every other item)", (long long)rk[1]);
        free_case(&c);
    }
    printf("%d random and edge problems\n", n_cases);
    return tu_finish("test_topk");
}
