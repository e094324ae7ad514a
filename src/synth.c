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

enum { SYNTH_MAX_INTERESTS = 64 };
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
    if (!(o->pop_skew >= 0 && o->pop_skew < 1)) return tmr_error(err, errlen, "pop_skew must be in [0, 1)");
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

/* Item (0-based) of cluster c with popularity ~ rank^-s: rank = floor(m * r^(1/(1-s))), the
 * inverse CDF of the continuous power law, O(1) and table-free. */
static int64_t cluster_item(const synth_opts_t *o, int32_t c, double r) {
    int64_t C = o->n_clusters, m = (o->n_items - c + C - 1) / C;
    int64_t rank = (int64_t)((double)m * pow(r, 1.0 / (1.0 - o->pop_skew)));
    if (rank >= m) rank = m - 1;
    return rank * C + c;
}

/* One user's sequence into x at offset off (length len). */
static void gen_user(const synth_opts_t *o, int64_t u, int64_t off, int64_t len, interactions_t *x) {
    int32_t cl[SYNTH_MAX_INTERESTS];
    double cum[SYNTH_MAX_INTERESTS];
    int k = user_interests(o, u, cl, cum);
    int64_t start = (int64_t)(unit(rng_u32(o->seed, RNG_SYNTH, EPOCH_USER, (uint64_t)u, 1)) * o->seq_len);
    int cur = 0;
    for (int64_t j = 0; j < len; j++) {
        /* words: 0 keep/switch, 1 which interest, 2 noise?, 3 the item */
        philox4x32_t w = rng_block(o->seed, RNG_SYNTH, EPOCH_STEP, (uint64_t)(off + j), 0);
        if (j == 0 || unit(w.v[0]) >= o->stay) cur = pick(cum, k, unit(w.v[1]));
        int64_t item = unit(w.v[2]) < o->noise ? (int64_t)(unit(w.v[3]) * (double)o->n_items)
                                                : cluster_item(o, cl[cur], unit(w.v[3]));
        x->user[off + j] = u + 1;
        x->item[off + j] = item + 1;
        x->time[off + j] = (start + j) * o->n_users + u;
    }
}

int synth_generate(const synth_opts_t *o, interactions_t *x, char *err, size_t errlen) {
    memset(x, 0, sizeof *x);
    if (check_opts(o, err, errlen) != 0) return -1;
    int64_t U = o->n_users, total = total_of(o);
    int64_t *off = tmr_malloc(tmr_mul_size((size_t)U + 1, sizeof(int64_t)));
    user_lengths(o, off + 1);
    off[0] = 0;
    for (int64_t u = 0; u < U; u++) off[u + 1] += off[u];
    x->n = total;
    x->user = tmr_malloc(tmr_mul_size((size_t)total, sizeof(int64_t)));
    x->item = tmr_malloc(tmr_mul_size((size_t)total, sizeof(int64_t)));
    x->time = tmr_malloc(tmr_mul_size((size_t)total, sizeof(int64_t)));
#pragma omp parallel for schedule(dynamic, 256)
    for (int64_t u = 0; u < U; u++) gen_user(o, u, off[u], off[u + 1] - off[u], x);
    free(off);
    return 0;
}

/* item_clusters.csv: the planted cluster of every final item id (prepare renumbers the items
 * that occur, in ascending original id). */
static int write_clusters(const synth_opts_t *o, const interactions_t *x, const char *dir, char *err,
                          size_t errlen) {
    unsigned char *used = tmr_calloc((size_t)o->n_items, 1);
    for (int64_t r = 0; r < x->n; r++) used[x->item[r] - 1] = 1;
    size_t cap = strlen(dir) + 64;
    char *path = tmr_malloc(cap), *tmp = tmr_malloc(cap);
    snprintf(path, cap, "%s/item_clusters.csv", dir);
    snprintf(tmp, cap, "%s/.item_clusters.csv.tmp%ld", dir, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        tmr_error(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        free(used), free(path), free(tmp);
        return -1;
    }
    int bad = fputs("item_id\tcluster\n", f) == EOF;
    int64_t id = 0;
    for (int64_t i = 0; i < o->n_items && !bad; i++)
        if (used[i]) bad = fprintf(f, "%" PRId64 "\t%" PRId64 "\n", ++id, i % o->n_clusters) < 0;
    bad |= fclose(f) != 0;
    free(used);
    int rc = 0;
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        rc = tmr_error(err, errlen, "cannot write %s: %s", path, strerror(errno));
    }
    free(path), free(tmp);
    return rc;
}

static const char *synth_usage =
    "usage: timirec synth [--out DIR] [--dataset NAME] [--n_users N] [--n_items N] [--n_clusters N]\n"
    "                     [--interests N] [--seq_len N] [--neg_items N] [--seed N] [more options below]\n"
    "\n"
    "Generate a synthetic multi-interest dataset into OUT/DATASET/{train,dev,test}.csv (the\n"
    "prepare recipe) and OUT/DATASET/item_clusters.csv (item_id, planted cluster). Items are\n"
    "dealt into clusters with a mild popularity skew inside each; every user mixes --interests\n"
    "clusters, keeping the current one with probability --stay. Lengths vary (exponential\n"
    "around --seq_len, at least --min_len); time is a global step counter.\n"
    "MovieLens-1M-sized: --n_users 6040 --n_items 3706 --n_interactions 1000209 --neg_items 1000";

int synth_main(int argc, char **argv) {
    synth_opts_t o;
    synth_defaults(&o);
    const char *out = "data", *dataset = "synth";
    int64_t neg_items = 100;
    const opt_t opts[] = {
        {"out", OPT_STR, &out, 0, 0, "folder that receives the dataset folder"},
        {"dataset", OPT_STR, &dataset, 0, 0, "dataset folder name"},
        {"n_users", OPT_INT, &o.n_users, 1, 2e9, "users"},
        {"n_items", OPT_INT, &o.n_items, 1, 2e9, "items (those never drawn are absent from the files)"},
        {"n_clusters", OPT_INT, &o.n_clusters, 1, 2e9, "item clusters (the planted interests)"},
        {"interests", OPT_INT, &o.interests, 1, SYNTH_MAX_INTERESTS, "clusters per user"},
        {"seq_len", OPT_INT, &o.seq_len, 1, 1e9, "mean interactions per user"},
        {"min_len", OPT_INT, &o.min_len, 1, 1e9, "fewest interactions of a user"},
        {"n_interactions", OPT_INT, &o.n_interactions, 0, 4e9, "exact total interactions (0: n_users * seq_len)"},
        {"stay", OPT_FLOAT, &o.stay, 0, 1, "probability of keeping the current interest at a step"},
        {"noise", OPT_FLOAT, &o.noise, 0, 1, "probability of a uniformly random item"},
        {"pop_skew", OPT_FLOAT, &o.pop_skew, 0, 0.99, "popularity exponent inside a cluster"},
        {"neg_items", OPT_INT, &neg_items, 0, 1e6, "negatives per dev/test row"},
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
    interactions_t x;
    if (synth_generate(&o, &x, err, sizeof err) != 0) {
        fprintf(stderr, "timirec: error: %s\n", err);
        return 1;
    }
    double t1 = tmr_now();
    size_t dir_cap = strlen(out) + strlen(dataset) + 2;
    char *dir = tmr_malloc(dir_cap);
    snprintf(dir, dir_cap, "%s/%s", out, dataset);
    prepare_stats_t st;
    rc = prepare_write_stats(&x, dir, (int)neg_items, (uint64_t)o.seed, &st, err, sizeof err);
    if (rc == 0) rc = write_clusters(&o, &x, dir, err, sizeof err);
    interactions_free(&x);
    if (rc != 0) {
        fprintf(stderr, "timirec: error: %s\n", err);
        free(dir);
        return 1;
    }
    printf("synth: %s: %" PRId64 " users, %" PRId64 " items, %" PRId64 " interactions (%" PRId64
           " clusters, %" PRId64 " interests per user); train %" PRId64 ", dev %" PRId64 ", test %" PRId64
           " rows; generate %.2f s, prepare %.2f s\n",
           dir, st.n_users, st.n_items, st.n_rows, o.n_clusters, o.interests, st.n_train, st.n_dev,
           st.n_test, t1 - t0, tmr_now() - t1);
    free(dir);
    return 0;
}
