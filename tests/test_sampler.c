/* Negatives, shuffles and batches against the spec, on a random dataset (checked with the
 * brute-force sort of data_util.h) and on ml-100k when present. */
#include "test_util.h"
#include "data_util.h"
#include "timirec/rng.h"
#include "timirec/sampler.h"

#include <omp.h>

static char err[2048];

/* A random dataset: users with 1..25 train rows, dev/test rows for most users. */
static const char *write_random_dataset(uint32_t seed, int n_users, int n_items) {
    const char *dir = du_tempdir("sampler");
    size_t cap = (size_t)n_users * 30 * 40 + 4096;
    char *tr = malloc(cap), *dv = malloc(cap), *ts = malloc(cap);
    char *a = tr, *b = dv, *c = ts;
    a += sprintf(a, "user_id\titem_id\ttime\n");
    b += sprintf(b, "user_id\titem_id\ttime\tneg_items\n");
    c += sprintf(c, "user_id\titem_id\ttime\tneg_items\n");
    for (int u = 1; u <= n_users; u++) {
        int n = 1 + (int)(rng_u32(seed, RNG_TEST, 0, (uint64_t)u, 0) % 25);
        int t = (int)(rng_u32(seed, RNG_TEST, 0, (uint64_t)u, 1) % 100);
        for (int k = 0; k < n; k++) {
            int it = 1 + (int)(rng_u32(seed, RNG_TEST, 1, (uint64_t)(u * 100 + k), 0) % (uint32_t)n_items);
            t += (int)(rng_u32(seed, RNG_TEST, 1, (uint64_t)(u * 100 + k), 1) % 3); /* ties */
            a += sprintf(a, "%d\t%d\t%d\n", u, it, t);
        }
        if (u % 5 != 0) {
            b += sprintf(b, "%d\t%d\t%d\t[%d, %d, %d]\n", u, 1 + u % n_items, t + 1, 1 + (u * 7) % n_items,
                         1 + (u * 3) % n_items, 1 + (u * 11) % n_items);
            c += sprintf(c, "%d\t%d\t%d\t[%d, %d, %d]\n", u, 1 + (u * 5) % n_items, t + 2,
                         1 + (u * 13) % n_items, 1 + (u * 2) % n_items, 1 + (u * 17) % n_items);
        }
    }
    du_write(dir, "train.csv", tr);
    du_write(dir, "dev.csv", dv);
    du_write(dir, "test.csv", ts);
    free(tr);
    free(dv);
    free(ts);
    return dir;
}

static void test_negatives(const corpus_t *c) {
    const corpus_phase_t *tr = &c->phase[PHASE_TRAIN];
    int num_neg = 3;
    size_t n = (size_t)tr->n_inst * num_neg;
    int32_t *neg = malloc(n * sizeof *neg), *again = malloc(n * sizeof *neg),
            *other = malloc(n * sizeof *neg);
    int rc = sampler_train_negatives(c, 42, 0, num_neg, neg, err, sizeof err);
    CHECK(rc == 0, "negatives: %s", err);
    sampler_train_negatives(c, 42, 0, num_neg, again, err, sizeof err);
    sampler_train_negatives(c, 42, 1, num_neg, other, err, sizeof err);
    CHECK(memcmp(neg, again, n * sizeof *neg) == 0, "same seed and epoch, same negatives");
    CHECK(memcmp(neg, other, n * sizeof *neg) != 0, "another epoch, other negatives");
    int out_of_range = 0, clicked = 0;
    for (int64_t i = 0; i < tr->n_inst; i++) {
        int32_t u = tr->user[tr->inst_row[i]];
        for (int j = 0; j < num_neg; j++) {
            int32_t it = neg[i * num_neg + j];
            if (it < 1 || it >= c->n_items) out_of_range++;
            /* linear scan of the user's train rows: independent of the clicked-set index */
            for (int64_t r = 0; r < tr->n_rows; r++)
                if (tr->user[r] == u && tr->item[r] == it) {
                    clicked++;
                    break;
                }
        }
    }
    CHECK(out_of_range == 0, "%d negatives outside 1..N-1", out_of_range);
    CHECK(clicked == 0, "%d negatives in the user's train set", clicked);
    free(neg);
    free(again);
    free(other);
}

/* Uniformity: a user with a fixed train set; draw many negatives; chi-square over the allowed
 * items. */
static void test_negative_uniformity(void) {
    const char *dir = du_tempdir("sampler_unif");
    /* Items 1..12; user 1 has items 2, 5, 9 in train; 9 allowed items. Many instances. */
    char *tr = malloc(200000), *a = tr;
    a += sprintf(a, "user_id\titem_id\ttime\n");
    int order[3] = {2, 5, 9};
    for (int k = 0; k < 6000; k++) a += sprintf(a, "1\t%d\t%d\n", order[k % 3], k);
    a += sprintf(a, "2\t12\t1\n");
    du_write(dir, "train.csv", tr);
    free(tr);
    du_write(dir, "dev.csv", "user_id\titem_id\ttime\tneg_items\n1\t3\t7000\t[1]\n");
    du_write(dir, "test.csv", "user_id\titem_id\ttime\tneg_items\n1\t4\t7001\t[1]\n");
    corpus_t c;
    corpus_opts_t o = {.path = dir, .dataset = ""};
    int rc = corpus_load(&o, &c, err, sizeof err);
    CHECK(rc == 0, "%s", err);
    if (rc) return;
    int64_t n = c.phase[PHASE_TRAIN].n_inst;
    int32_t *neg = malloc((size_t)n * 4 * sizeof *neg);
    sampler_train_negatives(&c, 7, 3, 4, neg, err, sizeof err);
    long count[13] = {0};
    for (int64_t i = 0; i < n * 4; i++) count[neg[i]]++;
    CHECK(count[0] == 0 && count[2] == 0 && count[5] == 0 && count[9] == 0, "clicked items drawn");
    double e = (double)(n * 4) / 9.0, chi2 = 0;
    for (int it = 1; it <= 12; it++)
        if (it != 2 && it != 5 && it != 9) chi2 += (count[it] - e) * (count[it] - e) / e;
    /* 8 degrees of freedom: P(chi2 > 26.1) = 0.001 */
    CHECK(chi2 < 26.1, "negatives not uniform over allowed items: chi2 %.2f", chi2);
    free(neg);
    corpus_free(&c);
    du_rm_rf(dir);
}

static void test_shuffle(void) {
    int64_t n = 100003;
    int64_t *p = malloc((size_t)n * sizeof *p), *q = malloc((size_t)n * sizeof *q);
    char *seen = calloc((size_t)n, 1);
    sampler_shuffle(n, 5, 0, p);
    int dup = 0, fixed = 0;
    for (int64_t i = 0; i < n; i++) {
        if (p[i] < 0 || p[i] >= n || seen[p[i]]) dup++;
        else seen[p[i]] = 1;
        fixed += p[i] == i;
    }
    CHECK(dup == 0, "not a permutation (%d bad)", dup);
    CHECK(fixed < 20, "%d fixed points: not shuffled", fixed);
    sampler_shuffle(n, 5, 0, q);
    CHECK(memcmp(p, q, (size_t)n * sizeof *p) == 0, "deterministic");
    sampler_shuffle(n, 5, 1, q);
    CHECK(memcmp(p, q, (size_t)n * sizeof *p) != 0, "another epoch, another order");
    /* The order is the one a key sort gives: keys ascending. */
    int unsorted = 0;
    for (int64_t i = 1; i < n; i++) {
        philox4x32_t a = rng_block(5, RNG_SHUFFLE, 0, (uint64_t)p[i - 1], 0);
        philox4x32_t b = rng_block(5, RNG_SHUFFLE, 0, (uint64_t)p[i], 0);
        uint64_t ka = (uint64_t)a.v[0] << 32 | a.v[1], kb = (uint64_t)b.v[0] << 32 | b.v[1];
        unsorted += ka > kb;
    }
    CHECK(unsorted == 0, "keys not ascending in %d places", unsorted);
    /* The same order on 1 and 3 threads (the buckets' thread ranges must not show). */
    const int threads = omp_get_max_threads();
    for (int nt = 1; nt <= 3; nt += 2) {
        omp_set_num_threads(nt);
        sampler_shuffle(n, 5, 0, q);
        CHECK(memcmp(p, q, (size_t)n * sizeof *p) == 0, "another order on %d threads", nt);
    }
    omp_set_num_threads(threads);
    /* Position of element 0 is uniform-ish: mean over epochs near n/2. */
    double mean = 0;
    for (uint32_t ep = 0; ep < 200; ep++) {
        sampler_shuffle(1000, 9, ep, q);
        for (int i = 0; i < 1000; i++)
            if (q[i] == 0) mean += i;
    }
    mean /= 200;
    CHECK(mean > 400 && mean < 600, "element 0's mean place %.1f", mean);
    free(p);
    free(q);
    free(seen);
}

/* Batches against the brute-force history, for every phase and a few history_max. */
static void test_batches(const corpus_t *c) {
    du_brute_t bf;
    du_brute_build(c, &bf);
    int num_neg = 2;
    const corpus_phase_t *trp = &c->phase[PHASE_TRAIN];
    int32_t *neg = malloc((size_t)trp->n_inst * num_neg * sizeof *neg);
    sampler_train_negatives(c, 1, 0, num_neg, neg, err, sizeof err);
    int32_t *want = malloc((size_t)bf.total * sizeof *want);
    int hms[3] = {20, 3, 0};
    for (int h = 0; h < 3; h++) {
        int hm = hms[h];
        int maxL = sampler_max_history(c, hm);
        batch_t b;
        batch_alloc(&b, 64, maxL, c->n_items);
        for (int p = 0; p < N_PHASES; p++) {
            const corpus_phase_t *ph = &c->phase[p];
            for (int test_all = 0; test_all <= (p != PHASE_TRAIN); test_all++) {
                int bad = 0;
                int64_t *perm = malloc((size_t)ph->n_inst * sizeof *perm);
                sampler_shuffle(ph->n_inst, 3, (uint32_t)h, perm);
                for (int64_t s = 0; s < ph->n_inst; s += 64) {
                    int B = (int)(ph->n_inst - s < 64 ? ph->n_inst - s : 64);
                    batch_fill(&b, c, p, perm + s, B, hm, neg, num_neg, test_all);
                    int L = 0;
                    for (int i = 0; i < B; i++) {
                        int64_t r = ph->inst_row[perm[s + i]];
                        int32_t n = du_brute_history(&bf, bf.base[p] + r, hm, want);
                        if (n > L) L = n;
                        if (b.length[i] != n || b.user[i] != ph->user[r]) bad++;
                        for (int l = 0; l < b.L; l++) {
                            int real = l < n;
                            int32_t wi = real ? want[l] : 0;
                            if (b.hist[i * b.L + l] != wi) bad++;
                            if (b.pos[i * b.L + l] != (real ? n - l : 0)) bad++;
                            if (b.mask[i * b.L + l] != (real ? 1.0f : 0.0f)) bad++;
                        }
                        const int32_t *cand = b.cand + (size_t)i * b.C;
                        if (cand[0] != ph->item[r]) bad++;
                        if (p == PHASE_TRAIN) {
                            if (b.C != 1 + num_neg) bad++;
                            for (int j = 0; j < num_neg; j++)
                                if (cand[1 + j] != neg[perm[s + i] * num_neg + j]) bad++;
                        } else if (test_all) {
                            if (b.C != c->n_items) bad++;
                            for (int j = 1; j < b.C; j++) bad += cand[j] != j;
                        } else {
                            if (b.C != 1 + ph->n_neg) bad++;
                            for (int j = 0; j < ph->n_neg; j++)
                                if (cand[1 + j] != ph->neg[r * ph->n_neg + j]) bad++;
                        }
                    }
                    if (b.L != L) bad++;
                }
                CHECK(bad == 0, "phase %d history_max %d test_all %d: %d mismatches", p, hm,
                      test_all, bad);
                free(perm);
            }
        }
        batch_free(&b);
    }
    free(want);
    free(neg);
    du_brute_free(&bf);
}

/* sampler_eval_users against a brute force (a user is in the sample when fewer than n users
 * of the phase have a smaller (Philox key, id)); users with 0, 1 and 2 instances; a pure
 * function of (seed, phase); every instance when n is 0 or covers the users; and uniform:
 * over many seeds every user is drawn about n / users of the time. */
static void test_eval_users(void) {
    const char *dir = du_tempdir("eval_users");
    const int U = 60;
    char *tr = malloc(65536), *dv = malloc(65536), *a = tr, *b = dv;
    a += sprintf(a, "user_id\titem_id\ttime\n");
    b += sprintf(b, "user_id\titem_id\ttime\n");
    for (int u = 1; u <= U; u++) {
        a += sprintf(a, "%d\t%d\t%d\n%d\t%d\t%d\n", u, 1 + u % 7, u, u, 1 + u % 5, u + 100);
        for (int k = 0; k < u % 3; k++) b += sprintf(b, "%d\t%d\t%d\n", u, 1 + (u + k) % 9, u + 200 + k);
    }
    du_write(dir, "train.csv", tr);
    du_write(dir, "dev.csv", dv);
    du_write(dir, "test.csv", dv);
    free(tr), free(dv);
    corpus_t c;
    corpus_opts_t o = {.path = dir, .dataset = ""};
    int rc = corpus_load(&o, &c, err, sizeof err);
    CHECK(rc == 0, "eval_users load: %s", err);
    if (rc) return;
    const corpus_phase_t *ph = &c.phase[PHASE_DEV];
    int64_t *inst = malloc((size_t)ph->n_inst * sizeof *inst), *inst2 = malloc((size_t)ph->n_inst * sizeof *inst2);
    int64_t *count = calloc(U + 1, sizeof *count), have = 0, bad = 0;
    uint64_t key[61];
    for (int u = 1; u <= U; u++) {
        philox4x32_t r = rng_block(0, RNG_EVAL_USERS, PHASE_DEV, (uint64_t)u, 0);
        key[u] = (uint64_t)r.v[0] << 32 | r.v[1];
        have += u % 3 != 0;
    }
    for (int64_t n = 1; n <= have; n += 7) { /* seed 0: against the brute force */
        int64_t got = sampler_eval_users(&c, PHASE_DEV, 0, n, inst), want = 0, users = 0;
        for (int64_t i = 0; i < ph->n_inst; i++) {
            int32_t u = ph->user[ph->inst_row[i]];
            int64_t smaller = 0;
            for (int v = 1; v <= U; v++) smaller += v % 3 != 0 && (key[v] < key[u] || (key[v] == key[u] && v < u));
            if (smaller < n) bad += want >= got || inst[want] != i, want++;
            users += smaller < n && (i == 0 || ph->user[ph->inst_row[i - 1]] != u);
        }
        bad += got != want || users != n;
    }
    CHECK(bad == 0, "eval_users sample differs from the brute force (%lld)", (long long)bad);
    int64_t all = sampler_eval_users(&c, PHASE_DEV, 3, 0, inst), all2 = sampler_eval_users(&c, PHASE_DEV, 3, have, inst2);
    CHECK(all == ph->n_inst && all2 == ph->n_inst && inst[all - 1] == all - 1 && inst2[all - 1] == all - 1,
          "eval_users 0 or >= users: every instance");
    int64_t n1 = sampler_eval_users(&c, PHASE_DEV, 5, 10, inst), n2 = sampler_eval_users(&c, PHASE_DEV, 5, 10, inst2);
    CHECK(n1 == n2 && memcmp(inst, inst2, (size_t)n1 * sizeof *inst) == 0, "eval_users: same seed, same sample");
    int64_t n3 = sampler_eval_users(&c, PHASE_TEST, 5, 10, inst2), n4 = 0;
    CHECK(n3 != n1 || memcmp(inst, inst2, (size_t)n1 * sizeof *inst) != 0, "eval_users: the phase changes the sample");
    n4 = sampler_eval_users(&c, PHASE_DEV, 6, 10, inst2);
    CHECK(n4 != n1 || memcmp(inst, inst2, (size_t)n1 * sizeof *inst) != 0, "eval_users: the seed changes the sample");
    const int seeds = 400;
    for (int s = 0; s < seeds; s++) {
        int64_t n = sampler_eval_users(&c, PHASE_DEV, (uint64_t)s + 100, 10, inst);
        for (int64_t i = 0; i < n; i++)
            if (i == 0 || ph->user[ph->inst_row[inst[i]]] != ph->user[ph->inst_row[inst[i - 1]]]) count[ph->user[ph->inst_row[inst[i]]]]++;
    }
    double expect = seeds * 10.0 / (double)have;
    int64_t lo = seeds, hi = 0;
    for (int u = 1; u <= U; u++)
        if (u % 3) lo = count[u] < lo ? count[u] : lo, hi = count[u] > hi ? count[u] : hi;
    CHECK(lo > expect * 0.4 && hi < expect * 1.6, "eval_users uniform: counts %lld..%lld, expected %.1f each",
          (long long)lo, (long long)hi, expect);
    free(inst), free(inst2), free(count);
    corpus_free(&c);
    du_rm_rf(dir);
}

int main(void) {
    const char *dir = write_random_dataset(11, 120, 60);
    char path[256];
    snprintf(path, sizeof path, "%s", dir);
    corpus_t c;
    corpus_opts_t o = {.path = path, .dataset = ""};
    int rc = corpus_load(&o, &c, err, sizeof err);
    CHECK(rc == 0, "load: %s", err);
    if (rc == 0) {
        test_negatives(&c);
        test_batches(&c);
        corpus_free(&c);
    }
    du_rm_rf(path);
    test_negative_uniformity();
    test_shuffle();
    test_eval_users();
    return tu_finish("test_sampler");
}
