/* Training negatives, epoch shuffles and batch assembly. */
#include "timirec/sampler.h"

#include "timirec/common.h"
#include "timirec/rng.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

void batch_alloc(batch_t *b, int max_B, int max_L, int max_C) {
    memset(b, 0, sizeof *b);
    if (max_L < 1) max_L = 1;
    size_t bl = tmr_mul_size((size_t)max_B, (size_t)max_L);
    size_t bc = tmr_mul_size((size_t)max_B, (size_t)max_C);
    b->user = tmr_malloc(tmr_mul_size((size_t)max_B, sizeof *b->user));
    b->length = tmr_malloc(tmr_mul_size((size_t)max_B, sizeof *b->length));
    b->hist = tmr_malloc(tmr_mul_size(bl, sizeof *b->hist));
    b->pos = tmr_malloc(tmr_mul_size(bl, sizeof *b->pos));
    b->mask = tmr_malloc(tmr_mul_size(bl, sizeof *b->mask));
    b->cand = tmr_malloc(tmr_mul_size(bc, sizeof *b->cand));
    b->cap_B = max_B;
    b->cap_L = max_L;
    b->cap_C = max_C;
}

void batch_free(batch_t *b) {
    free(b->user);
    free(b->length);
    free(b->hist);
    free(b->pos);
    free(b->mask);
    free(b->cand);
    memset(b, 0, sizeof *b);
}

int sampler_max_history(const corpus_t *c, int history_max) {
    int32_t longest = 0;
    for (int p = 0; p < N_PHASES; p++) {
        const corpus_phase_t *ph = &c->phase[p];
        for (int64_t r = 0; r < ph->n_rows; r++)
            if (ph->position[r] > longest) longest = ph->position[r];
    }
    if (history_max > 0 && longest > history_max) longest = history_max;
    return longest;
}

int sampler_n_candidates(const corpus_t *c, int phase, int num_neg, int test_all) {
    if (phase == PHASE_TRAIN) return 1 + num_neg;
    if (test_all) return c->n_items;
    return 1 + c->phase[phase].n_neg;
}

int sampler_check_negatives(const corpus_t *c, int num_neg, char *err, size_t errlen) {
    const corpus_phase_t *ph = &c->phase[PHASE_TRAIN];
    /* Rejection would never end for a user who has every item in train. */
    if (num_neg > 0 && c->max_train_clicked >= c->n_items - 1) {
        for (int64_t i = 0; i < ph->n_inst; i++) {
            int32_t u = ph->user[ph->inst_row[i]];
            if (c->train_off[u + 1] - c->train_off[u] >= c->n_items - 1)
                return tmr_error(err, errlen, "user %d has every item (%d) in train: no negative "
                                 "can be drawn for them", u, c->n_items - 1);
        }
    }
    return 0;
}

int sampler_train_negatives(const corpus_t *c, uint64_t seed, uint32_t epoch, int num_neg,
                            int32_t *neg, char *err, size_t errlen) {
    const corpus_phase_t *ph = &c->phase[PHASE_TRAIN];
    uint32_t range = (uint32_t)(c->n_items - 1); /* items 1 .. n_items-1 */
    if (sampler_check_negatives(c, num_neg, err, errlen)) return -1;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < ph->n_inst; i++) {
        int32_t u = ph->user[ph->inst_row[i]];
        const int32_t *clicked = c->train_items + c->train_off[u];
        int64_t n_clicked = c->train_off[u + 1] - c->train_off[u];
        for (int j = 0; j < num_neg; j++) {
            uint64_t index = (uint64_t)i * (uint64_t)num_neg + (uint64_t)j;
            rng_stream_t s = rng_stream(seed, RNG_TRAIN_NEG, epoch, index, 0);
            int32_t item;
            do {
                item = 1 + (int32_t)rng_stream_below(&s, range);
            } while (corpus_sorted_contains(clicked, n_clicked, item));
            neg[index] = item;
        }
    }
    return 0;
}

/* A 64-bit sort key and what it sorts; ties by index. */
typedef struct {
    uint64_t key;
    int64_t index;
} key_index_t;

static int cmp_key_index(const void *pa, const void *pb) {
    const key_index_t *a = pa, *b = pb;
    if (a->key != b->key) return a->key < b->key ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

int64_t sampler_eval_users(const corpus_t *c, int phase, uint64_t seed, int64_t n_users, int64_t *inst) {
    const corpus_phase_t *ph = &c->phase[phase];
    unsigned char *mark = tmr_calloc((size_t)c->n_users, 1); /* 1: has an instance, 2: sampled */
    int64_t n_have = 0;
    for (int64_t i = 0; i < ph->n_inst; i++) {
        int32_t u = ph->user[ph->inst_row[i]];
        n_have += !mark[u];
        mark[u] = 1;
    }
    if (n_users > 0 && n_users < n_have) {
        key_index_t *k = tmr_malloc(tmr_mul_size((size_t)n_have, sizeof *k));
        int64_t m = 0;
        for (int32_t u = 0; u < c->n_users; u++)
            if (mark[u]) {
                philox4x32_t r = rng_block(seed, RNG_EVAL_USERS, (uint32_t)phase, (uint64_t)u, 0);
                k[m++] = (key_index_t){(uint64_t)r.v[0] << 32 | r.v[1], u};
            }
        qsort(k, (size_t)m, sizeof *k, cmp_key_index);
        for (int64_t j = 0; j < n_users; j++) mark[k[j].index] = 2;
        free(k);
    }
    int64_t n = 0, want = n_users > 0 && n_users < n_have ? 2 : 1;
    for (int64_t i = 0; i < ph->n_inst; i++)
        if (mark[ph->user[ph->inst_row[i]]] == want) inst[n++] = i;
    free(mark);
    return n;
}

static inline uint64_t shuffle_key(uint64_t seed, uint32_t epoch, int64_t i) {
    const philox4x32_t r = rng_block(seed, RNG_SHUFFLE, epoch, (uint64_t)i, 0);
    return (uint64_t)r.v[0] << 32 | r.v[1];
}

/* One bucket of the shuffle: perm[lo..hi) sorted by (key, index), keys recomputed. */
static void shuffle_bucket(int64_t *perm, int64_t lo, int64_t hi, uint64_t seed, uint32_t epoch,
                           key_index_t **buf, int64_t *cap) {
    const int64_t m = hi - lo;
    if (m < 2) return;
    if (m > *cap) {
        *cap = 2 * m;
        *buf = tmr_realloc(*buf, tmr_mul_size((size_t)*cap, sizeof **buf));
    }
    key_index_t *k = *buf;
    for (int64_t j = 0; j < m; j++) k[j] = (key_index_t){shuffle_key(seed, epoch, perm[lo + j]), perm[lo + j]};
    qsort(k, (size_t)m, sizeof *k, cmp_key_index);
    for (int64_t j = 0; j < m; j++) perm[lo + j] = k[j].index;
}

/* Without a key array: each instance goes straight into perm's bucket for its key's top 16
 * bits, then every bucket (n / 65536 instances on average) is sorted by (key, index) with its
 * keys recomputed, so the order does not depend on the threads that filled it. Extra
 * memory 2 bytes per instance, where a radix sort of (key, index) pairs took 32: 2.7 GB at
 * Taobao size, the run's peak. */
void sampler_shuffle(int64_t n, uint64_t seed, uint32_t epoch, int64_t *perm) {
    if (n <= 0) return;
    enum { BUCKETS = 1 << 16 };
    uint16_t *top = tmr_malloc(tmr_mul_size((size_t)n, sizeof *top));
    const int max_th = omp_get_max_threads();
    int64_t *next = tmr_calloc((size_t)max_th * BUCKETS, sizeof *next); /* (thread, bucket) */
    int64_t *bucket_start = tmr_malloc((BUCKETS + 1) * sizeof *bucket_start);
#pragma omp parallel num_threads(max_th)
    {
        const int th = omp_get_thread_num(), n_th = omp_get_num_threads();
        const int64_t lo = n * th / n_th, hi = n * (th + 1) / n_th;
        int64_t *mine = next + (int64_t)th * BUCKETS;
        for (int64_t i = lo; i < hi; i++) {
            top[i] = (uint16_t)(shuffle_key(seed, epoch, i) >> 48);
            mine[top[i]]++;
        }
#pragma omp barrier
#pragma omp single
        { /* counts -> where each (bucket, thread) run starts: bucket-major, thread order */
            int64_t sum = 0;
            for (int64_t b = 0; b < BUCKETS; b++) {
                bucket_start[b] = sum;
                for (int t = 0; t < max_th; t++) {
                    const int64_t c = next[(int64_t)t * BUCKETS + b];
                    next[(int64_t)t * BUCKETS + b] = sum;
                    sum += c;
                }
            }
            bucket_start[BUCKETS] = sum;
        }
        for (int64_t i = lo; i < hi; i++) perm[mine[top[i]]++] = i;
#pragma omp barrier
        key_index_t *buf = NULL;
        int64_t cap = 0;
#pragma omp for schedule(dynamic, 256)
        for (int64_t b = 0; b < BUCKETS; b++)
            shuffle_bucket(perm, bucket_start[b], bucket_start[b + 1], seed, epoch, &buf, &cap);
        free(buf);
    }
    free(top);
    free(next);
    free(bucket_start);
}

/* Set b's shape, fatal if it was allocated too small. */
static void batch_shape(batch_t *b, int B, int L, int C) {
    if (B > b->cap_B || L > b->cap_L || C > b->cap_C)
        tmr_fatal("batch of %d x %d history x %d candidates exceeds its allocation %d x %d x %d",
                  B, L, C, b->cap_B, b->cap_L, b->cap_C);
    b->B = B;
    b->L = L;
    b->C = C;
}

/* Row i of b: the user and the history items[0 .. len), oldest first, padded to b->L. */
static void fill_history(batch_t *b, int i, int32_t user, const int32_t *items, int32_t len) {
    const int L = b->L;
    b->user[i] = user;
    b->length[i] = len;
    int32_t *h = b->hist + (size_t)i * L;
    int32_t *p = b->pos + (size_t)i * L;
    float *m = b->mask + (size_t)i * L;
    for (int l = 0; l < L; l++) {
        int real = l < len;
        h[l] = real ? items[l] : 0;
        p[l] = real ? len - l : 0;
        m[l] = real ? 1.0f : 0.0f;
    }
}

void batch_fill(batch_t *b, const corpus_t *c, int phase, const int64_t *inst, int B,
                int history_max, const int32_t *train_neg, int num_neg, int test_all) {
    const corpus_phase_t *ph = &c->phase[phase];
    int C = sampler_n_candidates(c, phase, num_neg, test_all);
    int L = 0;
    for (int i = 0; i < B; i++) {
        const int32_t *items;
        int64_t r = ph->inst_row[inst[i]];
        int32_t len = corpus_history(c, ph->user[r], ph->position[r], history_max, &items);
        if (len > L) L = len;
    }
    batch_shape(b, B, L, C);
    for (int i = 0; i < B; i++) {
        int64_t r = ph->inst_row[inst[i]];
        const int32_t *items;
        int32_t len = corpus_history(c, ph->user[r], ph->position[r], history_max, &items);
        fill_history(b, i, ph->user[r], items, len);
        int32_t *cand = b->cand + (size_t)i * C;
        cand[0] = ph->item[r];
        if (phase == PHASE_TRAIN) {
            memcpy(cand + 1, train_neg + (size_t)inst[i] * num_neg, (size_t)num_neg * sizeof *cand);
        } else if (test_all) {
            for (int32_t it = 1; it < c->n_items; it++) cand[it] = it;
        } else {
            memcpy(cand + 1, ph->neg + (size_t)r * ph->n_neg, (size_t)ph->n_neg * sizeof *cand);
        }
    }
}

/* The end of a user's whole sequence: its position is the sequence's length. */
static int32_t user_history(const corpus_t *c, int32_t user, int history_max,
                            const int32_t **items) {
    const int32_t n = (int32_t)(c->seq_off[user + 1] - c->seq_off[user]);
    return corpus_history(c, user, n, history_max, items);
}

void batch_fill_users(batch_t *b, const corpus_t *c, const int32_t *users, int B,
                      int history_max) {
    int L = 0;
    for (int i = 0; i < B; i++) {
        const int32_t *items;
        int32_t len = user_history(c, users[i], history_max, &items);
        if (len > L) L = len;
    }
    batch_shape(b, B, L, 1);
    for (int i = 0; i < B; i++) {
        const int32_t *items;
        int32_t len = user_history(c, users[i], history_max, &items);
        fill_history(b, i, users[i], items, len);
        b->cand[i] = 1; /* the forward pass wants a candidate; the user vectors ignore it */
    }
}
