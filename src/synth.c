/* Synthetic multi-interest data (prepare.h describes the generative story) and the
 * `timirec synth` subcommand, which writes it through prepare_write plus a side file
 * item_clusters.csv (item_id, cluster) with the planted structure in the final ids. */
#include "timirec/common.h"
#include "timirec/options.h"
#include "timirec/prepare.h"
#include "timirec/rng.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { SYNTH_MAX_INTERESTS = 64, SYNTH_MAX_SKEW = 4 };
enum { EPOCH_USER = 0, EPOCH_STEP = 1 }; /* RNG_SYNTH epochs: per-user set-up, per-interaction */

void synth_defaults(synth_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->n_users = 1000;
    o->n_items = 500;
    o->n_clusters = 20;
    o->interests = 3;
    o->seq_len = 30;
    o->min_len = 1;
    o->stay = 0.75;
    o->noise = 0.05;
    o->pop_skew = 0.3;
}

/* A uniform double in [0, 1) from one 32-bit word. */
static double unit(uint32_t w) { return (double)w * (1.0 / 4294967296.0); }

static int64_t total_of(const synth_opts_t *o) {
    return o->n_interactions > 0 ? o->n_interactions : o->n_users * (int64_t)o->seq_len;
}

static int check_opts(const synth_opts_t *o, char *err, size_t errlen) {
    if (o->n_users < 1 || o->n_items < 1) return tmr_error(err, errlen, "n_users and n_items must be >= 1");
    if (o->n_users >= INT32_MAX || o->n_items >= INT32_MAX)
        return tmr_error(err, errlen, "n_users and n_items must be < 2^31");
    if (o->n_clusters < 1 || o->n_clusters > o->n_items)
        return tmr_error(err, errlen, "n_clusters must be in 1..n_items (%" PRId64 ")", o->n_items);
    if (o->interests < 1 || o->interests > o->n_clusters || o->interests > SYNTH_MAX_INTERESTS)
        return tmr_error(err, errlen, "interests must be in 1..min(n_clusters, %d)", SYNTH_MAX_INTERESTS);
    if (o->seq_len < 1 || o->min_len < 1) return tmr_error(err, errlen, "seq_len and min_len must be >= 1");
    if (!(o->stay >= 0 && o->stay <= 1) || !(o->noise >= 0 && o->noise <= 1))
        return tmr_error(err, errlen, "stay and noise are probabilities (0..1)");
    if (!(o->pop_skew >= 0 && o->pop_skew <= SYNTH_MAX_SKEW)) return tmr_error(err, errlen, "pop_skew must be in [0, %d]", SYNTH_MAX_SKEW);
    int64_t total = total_of(o);
    if (o->n_interactions < 0 || total < o->n_users * (int64_t)o->min_len)
        return tmr_error(err, errlen, "n_interactions (%" PRId64 ") must be >= n_users * min_len", total);
    if (total >= (int64_t)UINT32_MAX - 1) return tmr_error(err, errlen, "too many interactions (%" PRId64 ")", total);
    if ((double)(o->seq_len + total) * (double)o->n_users > 4e18) /* the largest time must fit */
        return tmr_error(err, errlen, "seq_len, n_interactions and n_users too large together");
    return 0;
}

/* Per-user lengths: min_len + floor(share of the rest proportional to an Exp(1) draw), the
 * remainder dealt one by one from user 0, so they sum exactly to the total. len: (n_users) */
static void user_lengths(const synth_opts_t *o, int64_t *len) {
    int64_t U = o->n_users, total = total_of(o), extra = total - U * o->min_len;
    double *raw = tmr_malloc(tmr_mul_size((size_t)U, sizeof(double)));
    double sum = 0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
    for (int64_t u = 0; u < U; u++) {
        raw[u] = -log(1.0 - unit(rng_u32(o->seed, RNG_SYNTH, EPOCH_USER, (uint64_t)u, 0)));
        sum += raw[u];
    }
    double scale = sum > 0 ? (double)extra / sum * (1.0 - 1e-12) : 0;
    int64_t given = 0;
    for (int64_t u = 0; u < U; u++) {
        len[u] = o->min_len + (int64_t)floor(raw[u] * scale);
        given += len[u] - o->min_len;
    }
    for (int64_t u = 0; given < extra; u = (u + 1) % U, given++) len[u]++;
    free(raw);
}

/* A user's interests: distinct clusters and cumulative weights (last = 1). Draws from the
 * user's set-up stream after the two words used for the length and the start. */
static int user_interests(const synth_opts_t *o, int64_t u, int32_t *cl, double *cum) {
    uint32_t draw = 2;
    int k = (int)o->interests;
    for (int a = 0; a < k; a++) {
        int fresh;
        do {
            cl[a] = (int32_t)rng_below(o->seed, RNG_SYNTH, EPOCH_USER, (uint64_t)u, &draw, (uint32_t)o->n_clusters);
            fresh = 1;
            for (int b = 0; b < a; b++) fresh &= cl[b] != cl[a];
        } while (!fresh);
    }
    double s = 0;
    for (int a = 0; a < k; a++) {
        cum[a] = -log(1.0 - unit(rng_u32(o->seed, RNG_SYNTH, EPOCH_USER, (uint64_t)u, draw++))) + 1e-9;
        s += cum[a];
    }
    double acc = 0;
    for (int a = 0; a < k; a++) cum[a] = (acc += cum[a] / s);
    cum[k - 1] = 1.0;
    return k;
}

static int pick(const double *cum, int k, double r) {
    int a = 0;
    while (a < k - 1 && r >= cum[a]) a++;
    return a;
}

/* Item (0-based) of cluster c with popularity ~ rank^-pop_skew (Zipf-like), O(1) and
 * table-free through the inverse CDF of the continuous power law: for pop_skew < 1 density
 * x^-s on (0, m], for pop_skew >= 1 (the pole at 0 is not integrable) on [1, m + 1]; the rank
 * is the integer part (less 1 in the second form). */
static int64_t cluster_item(const synth_opts_t *o, int32_t c, double r) {
    int64_t C = o->n_clusters, m = (o->n_items - c + C - 1) / C;
    double s = o->pop_skew, x;
    if (s < 1) x = (double)m * pow(r, 1.0 / (1.0 - s));
    else if (s == 1) x = pow((double)m + 1.0, r) - 1.0;
    else x = pow(1.0 - r * (1.0 - pow((double)m + 1.0, 1.0 - s)), 1.0 / (1.0 - s)) - 1.0;
    int64_t rank = x > 0 ? (int64_t)x : 0;
    if (rank >= m) rank = m - 1;
    return rank * C + c;
}

/* The step of a user's first interaction (word 1 of its set-up stream). */
static int64_t user_start(const synth_opts_t *o, int64_t u) {
    return (int64_t)(unit(rng_u32(o->seed, RNG_SYNTH, EPOCH_USER, (uint64_t)u, 1)) * o->seq_len);
}

/* One step of a user's walk, from the Philox block of its global interaction number g: the
 * interest kept or re-picked (*cur; always picked at the first step), then the item (0-based). */
static int64_t walk_item(const synth_opts_t *o, const int32_t *cl, const double *cum, int k, int64_t g,
                         int first, int *cur) {
    /* words: 0 keep/switch, 1 which interest, 2 noise?, 3 the item */
    philox4x32_t w = rng_block(o->seed, RNG_SYNTH, EPOCH_STEP, (uint64_t)g, 0);
    if (first || unit(w.v[0]) >= o->stay) *cur = pick(cum, k, unit(w.v[1]));
    return unit(w.v[2]) < o->noise ? (int64_t)(unit(w.v[3]) * (double)o->n_items) : cluster_item(o, cl[*cur], unit(w.v[3]));
}

/* One user's sequence into x at offset off (length len). */
static void gen_user(const synth_opts_t *o, int64_t u, int64_t off, int64_t len, interactions_t *x) {
    int32_t cl[SYNTH_MAX_INTERESTS];
    double cum[SYNTH_MAX_INTERESTS];
    int k = user_interests(o, u, cl, cum), cur = 0;
    int64_t start = user_start(o, u);
    for (int64_t j = 0; j < len; j++) {
        x->user[off + j] = u + 1;
        x->item[off + j] = walk_item(o, cl, cum, k, off + j, j == 0, &cur) + 1;
        x->time[off + j] = (start + j) * o->n_users + u;
    }
}

/* Global interaction number of every user's first row. off: (n_users + 1), off[U] = total. */
static int64_t *user_offsets(const synth_opts_t *o) {
    int64_t U = o->n_users;
    int64_t *off = tmr_malloc(tmr_mul_size((size_t)U + 1, sizeof(int64_t)));
    user_lengths(o, off + 1);
    off[0] = 0;
    for (int64_t u = 0; u < U; u++) off[u + 1] += off[u];
    return off;
}

int synth_generate(const synth_opts_t *o, interactions_t *x, char *err, size_t errlen) {
    memset(x, 0, sizeof *x);
    if (check_opts(o, err, errlen) != 0) return -1;
    int64_t U = o->n_users, total = total_of(o);
    int64_t *off = user_offsets(o);
    x->n = total;
    x->user = tmr_malloc(tmr_mul_size((size_t)total, sizeof(int64_t)));
    x->item = tmr_malloc(tmr_mul_size((size_t)total, sizeof(int64_t)));
    x->time = tmr_malloc(tmr_mul_size((size_t)total, sizeof(int64_t)));
#pragma omp parallel for schedule(dynamic, 256)
    for (int64_t u = 0; u < U; u++) gen_user(o, u, off[u], off[u + 1] - off[u], x);
    free(off);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * The streaming writer: the files prepare_write would make of synth_generate's output, byte
 * for byte, without holding the interactions. prepare sorts by (time, user) and time is
 * (start_u + j) * n_users + u, so the sorted order is step by step, users ascending inside a
 * step: a walk over the steps with the list of users active at each step. Every user exists
 * (min_len >= 1) and keeps its id; items are renumbered over those that occur, found by a
 * first pass. Memory: O(n_users * interests + n_items + one user's rows).
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    const synth_opts_t *o;
    int k;                /* interests per user */
    int64_t *off;         /* (n_users + 1) global number of each user's first interaction */
    int64_t *start;       /* (n_users) step of each user's first interaction */
    int32_t *cl;          /* (n_users, k) each user's interests */
    double *cum;          /* (n_users, k) their cumulative weights */
    unsigned char *cur;   /* (n_users) current interest of each walk */
    unsigned char *used;  /* (n_items) the item occurs */
    uint32_t *rank;       /* (n_items) 0-based final id of an item that occurs */
    int64_t n_used, max_len;
} synth_plan_t;

/* Pass 1: lengths, starts, interests, and which items occur (each user's walk replayed). */
static void plan_build(const synth_opts_t *o, synth_plan_t *P) {
    int64_t U = o->n_users, I = o->n_items;
    int k = (int)o->interests;
    *P = (synth_plan_t){.o = o, .k = k, .off = user_offsets(o)};
    P->start = tmr_malloc(tmr_mul_size((size_t)U, sizeof(int64_t)));
    P->cl = tmr_malloc(tmr_mul_size((size_t)U * (size_t)k, sizeof(int32_t)));
    P->cum = tmr_malloc(tmr_mul_size((size_t)U * (size_t)k, sizeof(double)));
    P->cur = tmr_calloc((size_t)U, 1);
    P->used = tmr_calloc((size_t)I, 1);
    P->rank = tmr_malloc(tmr_mul_size((size_t)I, sizeof(uint32_t)));
    int64_t max_len = 0;
#pragma omp parallel for schedule(dynamic, 256) reduction(max : max_len)
    for (int64_t u = 0; u < U; u++) {
        int32_t *cl = P->cl + u * k;
        double *cum = P->cum + u * k;
        user_interests(o, u, cl, cum);
        P->start[u] = user_start(o, u);
        int cur = 0;
        int64_t len = P->off[u + 1] - P->off[u];
        for (int64_t j = 0; j < len; j++) {
            int64_t item = walk_item(o, cl, cum, k, P->off[u] + j, j == 0, &cur);
#pragma omp atomic write
            P->used[item] = 1;
        }
        if (len > max_len) max_len = len;
    }
    P->max_len = max_len;
    for (int64_t i = 0; i < I; i++) {
        P->rank[i] = (uint32_t)P->n_used;
        P->n_used += P->used[i];
    }
}

static void plan_free(synth_plan_t *P) {
    free(P->off), free(P->start), free(P->cl), free(P->cum), free(P->cur), free(P->used), free(P->rank);
}

/* One output file: text gathered in buf, written to a temp name, renamed by the caller. */
typedef struct {
    FILE *f;
    char *buf;
    size_t len, cap;
    int64_t rows;
    int bad;
} synth_out_t;

enum { SYNTH_OUT_BUF = 4 << 20 };

static void out_flush(synth_out_t *w) {
    if (w->len && !w->bad && fwrite(w->buf, 1, w->len, w->f) != w->len) w->bad = 1;
    w->len = 0;
}

/* The streaming state: the plan, the three files and the scratch of one user's item set. */
typedef struct {
    synth_plan_t *P;
    synth_out_t out[3]; /* train, dev, test */
    size_t row_max;
    int n_neg;
    uint64_t *bits;     /* (n_used / 64 + 1) the current user's items, zero between rows */
    uint32_t *items;    /* (max_len) their final ids */
    int64_t fail_user;  /* 1-based user holding (nearly) every item, 0 if none */
} synth_stream_t;

/* The negatives of user u's dev/test row (row k of its file): the user's whole walk replayed
 * into the bitmap, the list drawn exactly as prepare draws it. */
static char *put_user_negatives(synth_stream_t *S, int64_t u, uint32_t epoch, int64_t k, char *p) {
    const synth_plan_t *P = S->P;
    int64_t off = P->off[u], len = P->off[u + 1] - off, distinct = 0;
    const int32_t *cl = P->cl + u * P->k;
    const double *cum = P->cum + u * P->k;
    int cur = 0, fail;
    for (int64_t j = 0; j < len; j++) {
        uint32_t v = P->rank[walk_item(P->o, cl, cum, P->k, off + j, j == 0, &cur)];
        uint64_t m = 1ull << (v & 63);
        distinct += !(S->bits[v >> 6] & m);
        S->bits[v >> 6] |= m;
        S->items[j] = v;
    }
    p = prepare_put_negatives(p, S->bits, distinct, P->n_used, S->n_neg, (uint64_t)P->o->seed, epoch, k, &fail);
    if (fail && !S->fail_user) S->fail_user = u + 1;
    for (int64_t j = 0; j < len; j++) S->bits[S->items[j] >> 6] = 0;
    return p;
}

/* User u's row at step s into its file: the last row of a user with 2+ rows is test, the one
 * before (3+ rows) dev, the rest train; dev/test rows (epoch 1 / 0) get negatives. */
static void emit_row(synth_stream_t *S, int64_t u, int64_t s) {
    synth_plan_t *P = S->P;
    int64_t j = s - P->start[u], len = P->off[u + 1] - P->off[u];
    int cur = P->cur[u];
    int64_t item = walk_item(P->o, P->cl + u * P->k, P->cum + u * P->k, P->k, P->off[u] + j, j == 0, &cur);
    P->cur[u] = (unsigned char)cur;
    int role = (len >= 2 && j == len - 1) ? 2 : (len >= 3 && j == len - 2) ? 1 : 0;
    synth_out_t *w = &S->out[role];
    if (w->len + S->row_max > w->cap) out_flush(w);
    char *p = prepare_put_row(w->buf + w->len, (uint32_t)u + 1, P->rank[item] + 1, s * P->o->n_users + u);
    if (role) p = put_user_negatives(S, u, role == 2 ? 0 : 1, w->rows, p);
    *p++ = '\n';
    w->len = (size_t)(p - w->buf);
    w->rows++;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Every row in (time, user) order: per step, the users still active merged (ascending) with
 * those starting at it; steps with no user are skipped. */
static void stream_rows(synth_stream_t *S) {
    const synth_plan_t *P = S->P;
    int64_t U = P->o->n_users;
    uint64_t *by_start = tmr_malloc(tmr_mul_size((size_t)U, sizeof(uint64_t))); /* start << 31 | u */
    for (int64_t u = 0; u < U; u++) by_start[u] = (uint64_t)P->start[u] << 31 | (uint64_t)u;
    qsort(by_start, (size_t)U, sizeof *by_start, cmp_u64);
    int32_t *act = tmr_malloc(tmr_mul_size((size_t)U, sizeof(int32_t)));
    int32_t *next = tmr_malloc(tmr_mul_size((size_t)U, sizeof(int32_t)));
    int64_t n_act = 0, q = 0, s = 0;
    const uint64_t low = (1ull << 31) - 1;
    while ((n_act > 0 || q < U) && !S->fail_user && !S->out[0].bad && !S->out[1].bad && !S->out[2].bad) {
        if (n_act == 0) s = (int64_t)(by_start[q] >> 31);
        int64_t q1 = q, a = 0, n_next = 0;
        while (q1 < U && (int64_t)(by_start[q1] >> 31) == s) q1++;
        while (a < n_act || q < q1) {
            int64_t u = (q == q1 || (a < n_act && act[a] < (int64_t)(by_start[q] & low))) ? act[a++]
                                                                                         : (int64_t)(by_start[q++] & low);
            emit_row(S, u, s);
            if (s - P->start[u] + 1 < P->off[u + 1] - P->off[u]) next[n_next++] = (int32_t)u;
        }
        int32_t *t = act;
        act = next, next = t, n_act = n_next, s++;
    }
    free(by_start), free(act), free(next);
}

static const char *const stream_names[3] = {"train.csv", "dev.csv", "test.csv"};

/* Open the three temp files, stream, close; renamed only when all succeeded. */
static int stream_write(synth_plan_t *P, const char *dir, int n_neg, char *err, size_t errlen) {
    synth_stream_t S = {.P = P, .row_max = 80 + 12 * (size_t)n_neg, .n_neg = n_neg};
    S.bits = tmr_calloc((size_t)P->n_used / 64 + 1, sizeof(uint64_t));
    S.items = tmr_malloc(tmr_mul_size((size_t)P->max_len + 1, sizeof(uint32_t)));
    char *tmp[3], *dst[3];
    int rc = 0;
    for (int k = 0; k < 3; k++) {
        dst[k] = tmr_strf("%s/%s", dir, stream_names[k]);
        tmp[k] = tmr_strf("%s/.%s.tmp%ld", dir, stream_names[k], (long)getpid());
        synth_out_t *w = &S.out[k];
        w->cap = SYNTH_OUT_BUF + S.row_max;
        w->buf = tmr_malloc(w->cap);
        w->f = fopen(tmp[k], "wb");
        if (!w->f && rc == 0) rc = tmr_error(err, errlen, "cannot create %s: %s", tmp[k], strerror(errno));
        if (w->f && fputs(k ? prepare_eval_header(n_neg) : "user_id\titem_id\ttime\n", w->f) == EOF) w->bad = 1;
    }
    if (rc == 0) stream_rows(&S);
    for (int k = 0; k < 3; k++) {
        synth_out_t *w = &S.out[k];
        if (w->f) out_flush(w), w->bad |= fclose(w->f) != 0;
        if (rc == 0 && w->bad) rc = tmr_error(err, errlen, "cannot write %s: %s", tmp[k], strerror(errno));
    }
    if (rc == 0 && S.fail_user)
        rc = tmr_error(err, errlen, "user %" PRId64 " interacted with every item (or nearly): no negatives to draw",
                       S.fail_user);
    for (int k = 0; k < 3 && rc == 0; k++)
        if (rename(tmp[k], dst[k]) != 0) rc = tmr_error(err, errlen, "cannot rename %s to %s: %s", tmp[k], dst[k], strerror(errno));
    if (rc != 0)
        for (int k = 0; k < 3; k++) unlink(tmp[k]);
    for (int k = 0; k < 3; k++) free(dst[k]), free(tmp[k]), free(S.out[k].buf);
    free(S.bits), free(S.items);
    return rc;
}

/* item_clusters.csv: the planted cluster of every final item id (the items that occur,
 * renumbered in ascending original id). */
static int write_clusters(const synth_opts_t *o, const unsigned char *used, const char *dir, char *err,
                          size_t errlen) {
    char *path = tmr_strf("%s/item_clusters.csv", dir), *tmp = tmr_strf("%s/.item_clusters.csv.tmp%ld", dir, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        tmr_error(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        free(path), free(tmp);
        return -1;
    }
    int bad = fputs("item_id\tcluster\n", f) == EOF;
    int64_t id = 0;
    for (int64_t i = 0; i < o->n_items && !bad; i++)
        if (used[i]) bad = fprintf(f, "%" PRId64 "\t%" PRId64 "\n", ++id, i % o->n_clusters) < 0;
    bad |= fclose(f) != 0;
    int rc = 0;
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        rc = tmr_error(err, errlen, "cannot write %s: %s", path, strerror(errno));
    }
    free(path), free(tmp);
    return rc;
}

int synth_write(const synth_opts_t *o, const char *dir, int n_neg, prepare_stats_t *st, char *err,
                size_t errlen) {
    if (check_opts(o, err, errlen) != 0) return -1;
    if (n_neg < 0) return tmr_error(err, errlen, "negative --negatives %d", n_neg);
    char *probe = tmr_strf("%s/train.csv", dir);
    int rc = tmr_make_parent_dirs(probe, err, errlen);
    free(probe);
    if (rc != 0) return -1;
    synth_plan_t P;
    plan_build(o, &P);
    rc = stream_write(&P, dir, n_neg, err, errlen);
    if (rc == 0) rc = write_clusters(o, P.used, dir, err, errlen);
    if (st) {
        int64_t U = o->n_users, dev = 0, test = 0;
        for (int64_t u = 0; u < U; u++) dev += P.off[u + 1] - P.off[u] >= 3, test += P.off[u + 1] - P.off[u] >= 2;
        *st = (prepare_stats_t){.n_users = U, .n_items = P.n_used, .n_rows = P.off[U], .n_dev = dev,
                                .n_test = test, .n_train = P.off[U] - dev - test};
    }
    plan_free(&P);
    return rc;
}

static const char *synth_usage =
    "usage: timirec synth [--out DIR] [--dataset NAME] [--users N] [--items N] [--interactions N]\n"
    "                     [--negatives N] [--n_clusters N] [--interests N] [--seed N] [more options below]\n"
    "\n"
    "Generate a synthetic multi-interest dataset into OUT/DATASET/{train,dev,test}.csv (the\n"
    "prepare recipe) and OUT/DATASET/item_clusters.csv (item_id, planted cluster). Items are\n"
    "dealt into clusters with a Zipf-like popularity inside each (--pop_skew, the exponent:\n"
    "about 1 for the long tail of real logs); every user mixes --interests clusters, keeping the\n"
    "current one with probability --stay. Lengths vary (exponential around --seq_len, at least\n"
    "--min_len); time is a global step counter. Written streaming, in memory O(users + items).\n"
    "MovieLens-1M-sized: --users 6040 --items 3706 --interactions 1000209 --negatives 1000\n"
    "Taobao-sized (ComiRec): --users 976779 --items 1708530 --interactions 85384110 --negatives 0\n"
    "  --pop_skew 1 (then evaluate with --test_all 1)";

int synth_main(int argc, char **argv) {
    synth_opts_t o;
    synth_defaults(&o);
    const char *out = "data", *dataset = "synth";
    int64_t neg_items = 100;
    const opt_t opts[] = {
        {"out", OPT_STR, &out, 0, 0, "folder that receives the dataset folder"},
        {"dataset", OPT_STR, &dataset, 0, 0, "dataset folder name"},
        {"users", OPT_INT, &o.n_users, 1, 2e9, "users"},
        {"items", OPT_INT, &o.n_items, 1, 2e9, "items (those never drawn are absent from the files)"},
        {"interactions", OPT_INT, &o.n_interactions, 0, 4e9, "exact total interactions (0: users * seq_len)"},
        {"negatives", OPT_INT, &neg_items, 0, 1e6, "negatives per dev/test row (0: no neg_items column)"},
        {"n_clusters", OPT_INT, &o.n_clusters, 1, 2e9, "item clusters (the planted interests)"},
        {"interests", OPT_INT, &o.interests, 1, SYNTH_MAX_INTERESTS, "clusters per user"},
        {"seq_len", OPT_INT, &o.seq_len, 1, 1e9, "mean interactions per user"},
        {"min_len", OPT_INT, &o.min_len, 1, 1e9, "fewest interactions of a user"},
        {"stay", OPT_FLOAT, &o.stay, 0, 1, "probability of keeping the current interest at a step"},
        {"noise", OPT_FLOAT, &o.noise, 0, 1, "probability of a uniformly random item"},
        {"pop_skew", OPT_FLOAT, &o.pop_skew, 0, SYNTH_MAX_SKEW, "Zipf exponent of item popularity inside a cluster"},
        {"seed", OPT_INT, &o.seed, 0, 1e15, "seed (Philox RNG_SYNTH; also seeds the negatives)"},
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    char err[1024];
    int rc = options_parse(opts, n_opts, argc, argv, 1, NULL, 0, NULL, err, sizeof err);
    if (rc == 1) {
        options_usage(synth_usage, opts, n_opts, stdout);
        return 0;
    }
    if (rc != 0 || check_opts(&o, err, sizeof err) != 0) {
        fprintf(stderr, "timirec synth: %s\n(see timirec synth --help)\n", err);
        return 2;
    }
    double t0 = tmr_now();
    char *dir = tmr_strf("%s/%s", out, dataset);
    prepare_stats_t st;
    rc = synth_write(&o, dir, (int)neg_items, &st, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "timirec: error: %s\n", err);
        free(dir);
        return 1;
    }
    printf("synth: %s: %" PRId64 " users, %" PRId64 " items, %" PRId64 " interactions (%" PRId64
           " clusters, %" PRId64 " interests per user); train %" PRId64 ", dev %" PRId64 ", test %" PRId64
           " rows; %.2f s\n",
           dir, st.n_users, st.n_items, st.n_rows, o.n_clusters, o.interests, st.n_train, st.n_dev,
           st.n_test, tmr_now() - t0);
    free(dir);
    return 0;
}
