/* Batched scoring and top-K on the CPU (topk.h): blocks of rows against tiles of items with
 * the project's matrix product, a buffer of 2k candidates per row behind a threshold, OpenMP over row
 * blocks. Excluded items and the padding row are marked NaN in the tile, which the selection
 * skips like any NaN score. */
#include "timirec/topk.h"

#include "timirec/common.h"
#include "timirec/gemm.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Items per tile: 512 rows of the item table, packed by the product (op(B) = B^T), and 512
 * columns x 128 rows of scores (256 KiB) stay in L2 while the selection runs over them
 * (bench_topk: 256 and 1024 were 3-8% slower at 10,000 x 100,000 x 64). */
#define TILE_ITEMS 512
#define BLOCK_VECS 128 /* rows x n_vecs per block */

int topk_check(const topk_problem_t *p, int k, int max_k, char *err, size_t errlen) {
    if (p->n_rows < 0 || p->n_vecs < 1 || p->dim < 1 || p->n_items < 1)
        return tmr_error(err, errlen, "topk: bad shape: %lld rows, %d vectors each, dim %d, %d items",
                         (long long)p->n_rows, p->n_vecs, p->dim, (int)p->n_items);
    if (k < 1 || k > max_k) return tmr_error(err, errlen, "topk: k = %d outside 1..%d", k, max_k);
    if ((p->seen_off == NULL) != (p->seen == NULL))
        return tmr_error(err, errlen, "topk: seen_off and seen must both be set or both NULL");
    return 0;
}

static void check_or_die(const topk_problem_t *p, int k, const char *who) {
    char err[256];
    if (topk_check(p, k, TOPK_MAX_K, err, sizeof err)) tmr_fatal("%s: %s", who, err);
}

/* (score, item) with the order of topk.h. */
typedef struct {
    float score;
    int32_t item;
} scored_t;

static inline int worse(scored_t a, scored_t b) { /* a ranks below b */
    return a.score < b.score || (a.score == b.score && a.item > b.item);
}

static int cmp_best_first(const void *a, const void *b) {
    scored_t x = *(const scored_t *)a, y = *(const scored_t *)b;
    return worse(x, y) ? 1 : worse(y, x) ? -1 : 0;
}

/* Per-list selection state: a buffer of up to 2k candidates; once it fills, a quickselect
 * keeps the best k and their worst score becomes the threshold a later item must beat. A
 * candidate thus costs O(1) amortised (the heap this replaced paid a log k sift per entry:
 * 40% of the time at the ML-1M shape, k = 50). */
typedef struct {
    int n;          /* candidates in the buffer */
    int full;       /* a threshold is set */
    float thr;      /* the k-th best score so far (once full) */
} sel_t;

/* Quickselect on the order above: afterwards a[0 .. k) holds the k best of a[0 .. n). The
 * order is total within a list (distinct items), so the set kept is unique. */
static void select_best(scored_t *a, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        const scored_t pivot = a[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (worse(pivot, a[i])) i++;
            while (worse(a[j], pivot)) j--;
            if (i <= j) {
                scored_t t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

/* Keep the best k of the buffer and set the threshold to the worst of them. */
static void sel_compact(scored_t *buf, sel_t *st, int k) {
    select_best(buf, st->n, k);
    st->n = k;
    float w = buf[0].score;
    for (int i = 1; i < k; i++) w = buf[i].score < w ? buf[i].score : w;
    st->thr = w;
    st->full = 1;
}

/* 16 floats and 16 compare results (GCC vector extensions: one AVX-512 register, two AVX
 * ones; lowered to whatever the target has). */
typedef float sel_v16 __attribute__((vector_size(64), aligned(4), may_alias));
typedef int32_t sel_m16 __attribute__((vector_size(64)));

/* Feed scores s[0 .. n) of items first.. (ascending ids, after every earlier one). With a
 * threshold set, an item must score strictly higher: an equal score loses on its (higher)
 * id. NaN never enters (NaN > thr is false). Once the threshold is set, 16 items are tested
 * with one vector compare and skipped together when none beats it: the common case once a
 * list has settled. */
static void sel_feed(scored_t *buf, sel_t *st, int k, const float *s, int64_t n, int32_t first) {
    int64_t j = 0;
    while (j < n) {
        if (st->full && j + 16 <= n) {
            const sel_v16 x = *(const sel_v16 *)(s + j);
            const sel_m16 beat = x > st->thr; /* -1 where x > thr, 0 elsewhere (NaN: 0) */
            int32_t any = 0;
            for (int i = 0; i < 16; i++) any |= beat[i];
            if (!any) {
                j += 16;
                continue;
            }
        }
        const int64_t end = j + 16 < n ? j + 16 : n;
        for (; j < end; j++) {
            const float x = s[j];
            if (isnan(x) || (st->full && !(x > st->thr))) continue;
            buf[st->n++] = (scored_t){x, first + (int32_t)j};
            if (st->n == 2 * k) sel_compact(buf, st, k);
        }
    }
}

/* The best k of the buffer, best first, into the output row (padded with -1 / NaN). */
static int32_t sel_emit(scored_t *buf, sel_t *st, int k, int32_t *items, float *scores) {
    if (st->n > k) select_best(buf, st->n, k);
    const int m = st->n < k ? st->n : k;
    qsort(buf, (size_t)m, sizeof *buf, cmp_best_first);
    for (int i = 0; i < k; i++) {
        items[i] = i < m ? buf[i].item : -1;
        scores[i] = i < m ? buf[i].score : NAN;
    }
    return m;
}

static const int32_t *seen_list(const topk_problem_t *p, int64_t row, int64_t *n) {
    if (!p->seen_off) {
        *n = 0;
        return NULL;
    }
    int64_t l = p->seen_index ? p->seen_index[row] : row;
    *n = p->seen_off[l + 1] - p->seen_off[l];
    return p->seen + p->seen_off[l];
}

/* Rows per block: at most BLOCK_VECS vectors, and enough blocks for every thread. */
static int64_t rows_per_block(const topk_problem_t *p, int64_t n_rows, int vecs_per_row) {
    int64_t per = BLOCK_VECS / vecs_per_row;
    if (per < 1) per = 1;
    const int64_t th = omp_get_max_threads();
    const int64_t even = (n_rows + th - 1) / th;
    if (even < per) per = even < 4 ? 4 : even;
    (void)p;
    return per;
}

uint64_t topk_cpu_bytes(int64_t n_rows, int n_vecs, int dim, int k, int threads) {
    int64_t per = BLOCK_VECS / n_vecs;
    if (per < 1) per = 1;
    const int64_t even = threads > 0 ? (n_rows + threads - 1) / threads : n_rows;
    if (even < per) per = even < 4 ? 4 : even;
    const double thread = (double)TILE_ITEMS * dim * sizeof(float) + /* the product's packing */
                          (double)per * n_vecs * TILE_ITEMS * sizeof(float) +
                          (double)per * TILE_ITEMS * sizeof(float) +
                          (double)per * n_vecs * 2 * k * sizeof(scored_t) + (double)per * n_vecs * 40;
    const double b = (threads > 0 ? threads : 1) * thread;
    return b >= 1.8e19 ? UINT64_MAX : (uint64_t)b;
}

/* What the blocked pass does with each row's scores. */
typedef struct {
    int k;                     /* select mode: list size */
    const int32_t *targets;    /* rank mode (U), else NULL */
    int per_vec;               /* select mode: every vector its own row */
    int32_t *items_out;
    float *scores_out;
    int32_t *counts;
    int64_t *ranks;
} pass_t;

/* One block of rows r0 .. r0+nr: tile by tile, product, max over vectors, exclusions, then
 * selection or counting. ws: scores (nr*V, TILE) and, for max, (nr, TILE). */
static void run_block(const topk_problem_t *p, const pass_t *ps, int64_t r0,
                      int64_t nr, float *tile, float *best, scored_t *bufs, sel_t *sel,
                      int64_t *cursor, float *tscore, int64_t *beat, int64_t *marked) {
    const int V = p->n_vecs, D = p->dim;
    const int32_t N = p->n_items, first = p->skip_padding ? 1 : 0;
    const int64_t nv = nr * V;                       /* vectors in the block */
    const int64_t sel_rows = ps->per_vec ? nv : nr;  /* rows that get a list */
    const float *A = p->vecs + r0 * V * D;           /* (nv, D) */
    for (int64_t r = 0; r < sel_rows; r++) sel[r] = (sel_t){0, 0, 0.0f};
    for (int64_t r = 0; r < nr; r++) cursor[r] = 0;
    if (ps->targets) {
        /* Target scores from the same product: (nv, D) x (nr, D)^T, the diagonal blocks. */
        float *tv = tmr_malloc(tmr_mul_size((size_t)nr * D, sizeof *tv));
        float *g = tmr_malloc(tmr_mul_size((size_t)nv * nr, sizeof *g));
        for (int64_t r = 0; r < nr; r++) {
            const int32_t t = ps->targets[r0 + r];
            if (t < first || t >= N)
                tmr_fatal("topk_rank: target %d of row %lld outside items %d..%d", (int)t,
                          (long long)(r0 + r), (int)first, (int)N - 1);
            memcpy(tv + r * D, p->items + (int64_t)t * D, sizeof *tv * (size_t)D);
        }
        tmr_sgemm(0, 1, nv, nr, D, 1.0f, A, D, tv, D, 0.0f, g, nr);
        for (int64_t r = 0; r < nr; r++) {
            float m = g[(r * V) * nr + r];
            for (int v = 1; v < V; v++) {
                const float x = g[(r * V + v) * nr + r];
                m = x > m ? x : m;
            }
            tscore[r] = m;
            beat[r] = 0;
            marked[r] = 0;
        }
        free(tv);
        free(g);
    }
    for (int64_t j0 = 0; j0 < N; j0 += TILE_ITEMS) {
        const int64_t nj = N - j0 < TILE_ITEMS ? N - j0 : TILE_ITEMS;
        /* The tile's rows of the item table in place, as op(B) = B^T: the product packs them
         * (a copy of 512 x D per tile, nothing of catalog size: at 1.7M items a transposed
         * table was 437 MB and 0.4 s per call). */
        tmr_sgemm(0, 1, nv, nj, D, 1.0f, A, D, p->items + j0 * D, D, 0.0f, tile, TILE_ITEMS);
        float *rows = tile; /* (sel_rows or nr, TILE) the scores to select from */
        if (V > 1 && !ps->per_vec) {
            rows = best;
            for (int64_t r = 0; r < nr; r++) {
                float *b = best + r * TILE_ITEMS;
                memcpy(b, tile + r * V * TILE_ITEMS, sizeof *b * (size_t)nj);
                for (int v = 1; v < V; v++) {
                    const float *x = tile + (r * V + v) * TILE_ITEMS;
                    for (int64_t j = 0; j < nj; j++) b[j] = x[j] > b[j] ? x[j] : b[j];
                }
            }
        }
        const int vr = ps->per_vec ? V : 1; /* list rows per problem row */
        for (int64_t r = 0; r < nr; r++) {
            int64_t n_seen;
            const int32_t *seen = seen_list(p, r0 + r, &n_seen);
            const int32_t tgt = ps->targets ? ps->targets[r0 + r] : -1;
            int64_t e = cursor[r];
            while (e < n_seen && seen[e] < j0) e++;
            for (; e < n_seen && seen[e] < j0 + nj; e++) {
                const int32_t it = seen[e];
                if (e > 0 && seen[e - 1] == it) continue; /* duplicate */
                if (it < first || it == tgt) continue;
                for (int v = 0; v < vr; v++) rows[(r * vr + v) * TILE_ITEMS + (it - j0)] = NAN;
                if (ps->targets) marked[r]++;
            }
            cursor[r] = e;
            if (j0 == 0 && first == 1)
                for (int v = 0; v < vr; v++) rows[(r * vr + v) * TILE_ITEMS] = NAN;
            if (ps->targets) {
                const float *s = rows + r * TILE_ITEMS, t = tscore[r];
                if (tgt >= j0 && tgt < j0 + nj) rows[r * TILE_ITEMS + (tgt - j0)] = NAN;
                int64_t c = 0;
                for (int64_t j = 0; j < nj; j++) c += s[j] >= t;
                beat[r] += c;
            } else {
                for (int v = 0; v < vr; v++) {
                    const int64_t lr = r * vr + v;
                    sel_feed(bufs + lr * 2 * ps->k, &sel[lr], ps->k, rows + lr * TILE_ITEMS, nj,
                             (int32_t)j0);
                }
            }
        }
    }
    if (ps->targets) {
        for (int64_t r = 0; r < nr; r++) {
            /* Ranked items: first..N-1 minus the excluded ones (target not among them). */
            const int64_t others = (int64_t)N - first - marked[r] - 1;
            ps->ranks[r0 + r] = isnan(tscore[r]) ? others + 1 : beat[r] + 1;
        }
        return;
    }
    for (int64_t lr = 0; lr < sel_rows; lr++) {
        const int64_t out = r0 * (ps->per_vec ? V : 1) + lr;
        ps->counts[out] = sel_emit(bufs + lr * 2 * ps->k, &sel[lr], ps->k,
                                   ps->items_out + out * ps->k, ps->scores_out + out * ps->k);
    }
}

static void run_pass(const topk_problem_t *p, const pass_t *ps) {
    const int64_t U = p->n_rows;
    if (U == 0) return;
    const int V = p->n_vecs;
    const int64_t per = rows_per_block(p, U, V), n_blocks = (U + per - 1) / per;
    const int64_t lists = ps->per_vec ? per * V : per;
#pragma omp parallel
    {
        float *tile = tmr_malloc(tmr_mul_size((size_t)per * V * TILE_ITEMS, sizeof(float)));
        float *best = tmr_malloc(tmr_mul_size((size_t)per * TILE_ITEMS, sizeof(float)));
        scored_t *bufs = ps->targets ? NULL
                                     : tmr_malloc(tmr_mul_size((size_t)lists * 2 * ps->k, sizeof(scored_t)));
        sel_t *sel = tmr_malloc(tmr_mul_size((size_t)lists, sizeof(sel_t)));
        int64_t *cursor = tmr_malloc(tmr_mul_size((size_t)per, sizeof(int64_t)));
        float *tscore = tmr_malloc(tmr_mul_size((size_t)per, sizeof(float)));
        int64_t *beat = tmr_malloc(tmr_mul_size((size_t)per, sizeof(int64_t)));
        int64_t *marked = tmr_malloc(tmr_mul_size((size_t)per, sizeof(int64_t)));
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < n_blocks; b++) {
            const int64_t r0 = b * per, nr = U - r0 < per ? U - r0 : per;
            run_block(p, ps, r0, nr, tile, best, bufs, sel, cursor, tscore, beat, marked);
        }
        free(tile);
        free(best);
        free(bufs);
        free(sel);
        free(cursor);
        free(tscore);
        free(beat);
        free(marked);
    }
}

void topk_cpu(const topk_problem_t *p, int k, int32_t *items_out, float *scores_out,
              int32_t *counts) {
    check_or_die(p, k, "topk_cpu");
    pass_t ps = {k, NULL, 0, items_out, scores_out, counts, NULL};
    run_pass(p, &ps);
}

void topk_cpu_per_vec(const topk_problem_t *p, int k, int32_t *items_out, float *scores_out,
                      int32_t *counts) {
    check_or_die(p, k, "topk_cpu_per_vec");
    pass_t ps = {k, NULL, 1, items_out, scores_out, counts, NULL};
    run_pass(p, &ps);
}

void topk_rank_cpu(const topk_problem_t *p, const int32_t *targets, int64_t *ranks) {
    check_or_die(p, 1, "topk_rank_cpu");
    pass_t ps = {1, targets, 0, NULL, NULL, NULL, ranks};
    run_pass(p, &ps);
}

void topk_merge_lists(int64_t n_rows, int n_lists, int k_in, const int32_t *items,
                      const float *scores, const int32_t *counts, int k, int32_t *items_out,
                      float *scores_out, int32_t *counts_out) {
    if (n_lists < 1 || k_in < 1 || k < 1) tmr_fatal("topk_merge_lists: %d lists of %d, k %d", n_lists, k_in, k);
#pragma omp parallel
    {
        scored_t *all = tmr_malloc(tmr_mul_size((size_t)n_lists * k_in, sizeof *all));
#pragma omp for schedule(static)
        for (int64_t r = 0; r < n_rows; r++) {
            int n = 0;
            for (int l = 0; l < n_lists; l++) {
                const int64_t li = r * n_lists + l;
                for (int i = 0; i < counts[li]; i++)
                    all[n++] = (scored_t){scores[li * k_in + i], items[li * k_in + i]};
            }
            qsort(all, (size_t)n, sizeof *all, cmp_best_first);
            /* Keep each item's first (best) occurrence: a duplicate's copies are adjacent only
             * when their scores tie, so look back through the kept ones. */
            int kept = 0;
            int32_t *io = items_out + r * k;
            float *so = scores_out + r * k;
            for (int i = 0; i < n && kept < k; i++) {
                int dup = 0;
                for (int j = 0; j < kept && !dup; j++) dup = io[j] == all[i].item;
                if (dup) continue;
                io[kept] = all[i].item;
                so[kept++] = all[i].score;
            }
            counts_out[r] = kept;
            for (int i = kept; i < k; i++) {
                io[i] = -1;
                so[i] = NAN;
            }
        }
        free(all);
    }
}

void topk_bruteforce(const topk_problem_t *p, int k, int32_t *items_out, float *scores_out,
                     int32_t *counts) {
    check_or_die(p, k, "topk_bruteforce");
    const int V = p->n_vecs, D = p->dim;
    const int32_t N = p->n_items;
    float *s = tmr_malloc(tmr_mul_size((size_t)V * N, sizeof *s));
    scored_t *all = tmr_malloc(tmr_mul_size((size_t)N, sizeof *all));
    char *excluded = tmr_malloc((size_t)N);
    for (int64_t r = 0; r < p->n_rows; r++) {
        tmr_sgemm(0, 1, V, N, D, 1.0f, p->vecs + r * V * D, D, p->items, D, 0.0f, s, N);
        memset(excluded, 0, (size_t)N);
        int64_t n_seen;
        const int32_t *seen = seen_list(p, r, &n_seen);
        for (int64_t e = 0; e < n_seen; e++)
            if (seen[e] >= 0 && seen[e] < N) excluded[seen[e]] = 1;
        if (p->skip_padding) excluded[0] = 1;
        int n = 0;
        for (int32_t j = 0; j < N; j++) {
            float m = s[j];
            for (int v = 1; v < V; v++) m = s[(int64_t)v * N + j] > m ? s[(int64_t)v * N + j] : m;
            if (!excluded[j] && !isnan(m)) all[n++] = (scored_t){m, j};
        }
        qsort(all, (size_t)n, sizeof *all, cmp_best_first);
        counts[r] = n < k ? n : k;
        for (int i = 0; i < k; i++) {
            items_out[r * k + i] = i < n ? all[i].item : -1;
            scores_out[r * k + i] = i < n ? all[i].score : NAN;
        }
    }
    free(s);
    free(all);
    free(excluded);
}
