/* synth: a small dataset through `timirec synth` (in-process): ids in range, every dev/test row
 * has the requested negatives (valid, never the user's items), short users exist, train is in
 * time order, output identical for any thread count, and the planted structure shows: on dev,
 * a cluster-affinity scorer (history items sharing the candidate's cluster) beats popularity
 * (train counts) on HR@10 by at least 2x. */
#include "test_util.h"
#include "data_util.h"
#include "timirec/prepare.h"
#include "timirec/rng.h"

#include <dirent.h>
#include <omp.h>
#include <stdint.h>
#include <unistd.h>

typedef struct {
    int64_t n;
    int64_t *u, *i, *t;
    int n_neg;     /* -1: no neg_items column */
    int64_t *neg;  /* (n, n_neg) */
    int ok;
} rows_t;

/* Tab-separated rows after a header: ints, then optionally a "[a, b, ...]" list. */
static rows_t read_rows(const char *dir, const char *name, int with_list) {
    rows_t s = {0, NULL, NULL, NULL, -1, NULL, 0};
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = du_read_all(path, NULL);
    if (!text) return s;
    int64_t lines = 0, commas = 0;
    for (char *c = text; *c; c++) lines += *c == '\n', commas += *c == ',';
    s.u = malloc((lines + 1) * 8), s.i = malloc((lines + 1) * 8), s.t = malloc((lines + 1) * 8);
    s.neg = malloc((commas + lines + 1) * 8);
    int64_t nn = 0;
    char *p = strchr(text, '\n');
    s.ok = p != NULL;
    while (p && p[1]) {
        char *e;
        s.u[s.n] = strtoll(p + 1, &e, 10);
        s.ok &= *e == '\t';
        s.i[s.n] = strtoll(e + 1, &e, 10);
        if (with_list || *e == '\t') {
            s.ok &= *e == '\t';
            s.t[s.n] = strtoll(e + 1, &e, 10);
        }
        if (with_list) {
            s.ok &= e[0] == '\t' && e[1] == '[';
            e += 2;
            int cnt = 0;
            while (*e && *e != ']' && *e != '\n') {
                s.neg[nn++] = strtoll(e, &e, 10), cnt++;
                if (*e == ',') e += 2;
            }
            s.ok &= *e == ']';
            e += *e == ']';
            if (s.n == 0) s.n_neg = cnt;
            s.ok &= cnt == s.n_neg;
        }
        s.ok &= *e == '\n';
        p = strchr(e, '\n');
        s.n++;
    }
    free(text);
    return s;
}

static void rows_free(rows_t *s) { free(s->u), free(s->i), free(s->t), free(s->neg); }

static void rm_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

static int same_file(const char *a, const char *b) {
    size_t la, lb;
    char *ta = du_read_all(a, &la), *tb = du_read_all(b, &lb);
    int same = ta && tb && la == lb && memcmp(ta, tb, la) == 0;
    free(ta), free(tb);
    return same;
}

static int run_synth(const char *out, const char *dataset, const char *n_users, const char *seed) {
    char *argv[] = {"synth", "--out", (char *)out, "--dataset", (char *)dataset, "--users", (char *)n_users,
                    "--items", "500", "--n_clusters", "20", "--interests", "3", "--seq_len", "30",
                    "--negatives", "100", "--seed", (char *)seed};
    return synth_main((int)(sizeof argv / sizeof argv[0]), argv);
}

/* The reference path for synth_write: synth_generate, prepare_write, and item_clusters.csv
 * from the items that occur (renumbered ascending). Returns prepare_write's code. */
static int reference_files(const synth_opts_t *o, const char *dir, int n_neg) {
    interactions_t x;
    char err[512];
    if (synth_generate(o, &x, err, sizeof err) != 0) return -2;
    int rc = prepare_write(&x, dir, n_neg, (uint64_t)o->seed, err, sizeof err);
    unsigned char *used = calloc((size_t)o->n_items, 1);
    for (int64_t r = 0; r < x.n; r++) used[x.item[r] - 1] = 1;
    char path[400];
    snprintf(path, sizeof path, "%s/item_clusters.csv", dir);
    FILE *f = rc == 0 ? fopen(path, "wb") : NULL;
    if (f) {
        fputs("item_id\tcluster\n", f);
        for (int64_t i = 0, id = 0; i < o->n_items; i++)
            if (used[i]) fprintf(f, "%lld\t%lld\n", (long long)++id, (long long)(i % o->n_clusters));
        fclose(f);
    }
    free(used);
    interactions_free(&x);
    return rc;
}

/* synth_write (streaming) writes the reference path's bytes, over random option sets (Philox
 * RNG_TEST draws): Zipf exponents below, at and above 1, no negatives (no neg_items column),
 * lengths from n_interactions or seq_len. When a user holds every item both fail. */
static void check_stream_matches(const char *tmp) {
    static const char *const names[4] = {"train.csv", "dev.csv", "test.csv", "item_clusters.csv"};
    int compared = 0, no_neg = 0, zipf = 0;
    for (uint64_t c = 0; c < 16; c++) {
        uint32_t d = 0;
#define DRAW(n) ((int64_t)rng_below(2026, RNG_TEST, 17, c, &d, (uint32_t)(n)))
        synth_opts_t o;
        synth_defaults(&o);
        o.n_users = 1 + DRAW(300);
        o.n_items = 2 + DRAW(600);
        o.n_clusters = 1 + DRAW(o.n_items < 25 ? o.n_items : 25);
        o.interests = 1 + DRAW(o.n_clusters < 6 ? o.n_clusters : 6);
        o.seq_len = 1 + DRAW(40);
        o.min_len = 1 + DRAW(4);
        o.n_interactions = DRAW(2) ? 0 : o.n_users * o.min_len + DRAW(8000);
        o.stay = DRAW(1001) / 1000.0;
        o.noise = DRAW(301) / 1000.0;
        int64_t sk = (int64_t)(c % 4); /* every kind of exponent and of negatives in turn */
        o.pop_skew = sk == 0 ? DRAW(99) / 100.0 : sk == 1 ? 1.0 : 1.0 + DRAW(300) / 100.0;
        o.seed = DRAW(100000);
        int n_neg = c % 3 == 0 ? 0 : 1 + (int)DRAW(40);
#undef DRAW
        char a[300], b[300], err[512];
        snprintf(a, sizeof a, "%s/ref%llu", tmp, (unsigned long long)c);
        snprintf(b, sizeof b, "%s/stream%llu", tmp, (unsigned long long)c);
        int rc_ref = reference_files(&o, a, n_neg);
        prepare_stats_t st;
        int rc = synth_write(&o, b, n_neg, &st, err, sizeof err);
        CHECK((rc == 0) == (rc_ref == 0), "case %llu: stream rc %d (%s), reference rc %d", (unsigned long long)c, rc,
              rc ? err : "", rc_ref);
        if (rc == 0 && rc_ref == 0) {
            for (int k = 0; k < 4; k++) {
                char fa[400], fb[400];
                snprintf(fa, sizeof fa, "%s/%s", a, names[k]);
                snprintf(fb, sizeof fb, "%s/%s", b, names[k]);
                CHECK(same_file(fa, fb), "case %llu (users %lld, items %lld, skew %.2f, negatives %d): %s differs",
                      (unsigned long long)c, (long long)o.n_users, (long long)o.n_items, o.pop_skew, n_neg, names[k]);
            }
            int64_t total = o.n_interactions ? o.n_interactions : o.n_users * o.seq_len;
            CHECK(st.n_users == o.n_users && st.n_rows == total && st.n_train + st.n_dev + st.n_test == total,
                  "case %llu: stats", (unsigned long long)c);
            compared++, no_neg += n_neg == 0, zipf += o.pop_skew >= 1;
        }
        rm_dir(a), rm_dir(b);
    }
    printf("streaming writer: %d of 16 random cases byte-identical (%d without negatives, %d with Zipf >= 1)\n",
           compared, no_neg, zipf);
    CHECK(compared >= 12 && no_neg >= 3 && zipf >= 6, "enough cases compared");
}

/* The share of interactions on the most popular 1% of items. */
static double top1_share(const synth_opts_t *o) {
    interactions_t x;
    char err[512];
    if (synth_generate(o, &x, err, sizeof err) != 0) return -1;
    int64_t *cnt = calloc((size_t)o->n_items, sizeof *cnt), top = o->n_items / 100, sum = 0;
    for (int64_t r = 0; r < x.n; r++) cnt[x.item[r] - 1]++;
    for (int64_t t = 0; t < top; t++) { /* the largest `top` counts, by repeated maximum */
        int64_t best = 0;
        for (int64_t i = 1; i < o->n_items; i++) best = cnt[i] > cnt[best] ? i : best;
        sum += cnt[best], cnt[best] = -1;
    }
    double share = (double)sum / (double)x.n;
    free(cnt);
    interactions_free(&x);
    return share;
}

/* Long tail: with --pop_skew 1.2 the top 1% of items take a large share (Zipf-like, as in
 * real logs), with the default 0.3 a small one. */
static void check_long_tail(void) {
    synth_opts_t o;
    synth_defaults(&o);
    o.n_users = 2000, o.n_items = 5000, o.seq_len = 20, o.seed = 5;
    double mild = top1_share(&o);
    o.pop_skew = 1.2;
    double zipf = top1_share(&o);
    printf("top 1%% of items: %.3f of interactions at pop_skew 0.3, %.3f at 1.2\n", mild, zipf);
    CHECK(mild > 0 && mild < 0.10, "pop_skew 0.3: top 1%% share %.3f", mild);
    CHECK(zipf > 0.25, "pop_skew 1.2: top 1%% share %.3f", zipf);
}

/* HR@10 of the target among its negatives; ties count against the target. */
static int hit10(double target, const double *neg, int n) {
    int above = 0;
    for (int j = 0; j < n; j++) above += neg[j] >= target;
    return above < 10;
}

int main(void) {
    char tmp[] = "/tmp/timirec_test_synth_XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    char dir[300], dir2[300], dir3[300];
    snprintf(dir, sizeof dir, "%s/s", tmp);
    snprintf(dir2, sizeof dir2, "%s/s1thread", tmp);
    snprintf(dir3, sizeof dir3, "%s/seed2", tmp);
    const int64_t U = 2000, N_NEG = 100;
    CHECK(run_synth(tmp, "s", "2000", "1") == 0, "synth runs");
    omp_set_num_threads(1);
    CHECK(run_synth(tmp, "s1thread", "2000", "1") == 0, "synth runs on one thread");
    CHECK(run_synth(tmp, "seed2", "2000", "2") == 0, "synth runs with another seed");
    const char *names[4] = {"train.csv", "dev.csv", "test.csv", "item_clusters.csv"};
    for (int k = 0; k < 4; k++) {
        char a[400], b[400];
        snprintf(a, sizeof a, "%s/%s", dir, names[k]);
        snprintf(b, sizeof b, "%s/%s", dir2, names[k]);
        CHECK(same_file(a, b), "%s identical with 1 thread and many", names[k]);
        snprintf(b, sizeof b, "%s/%s", dir3, names[k]);
        if (k < 3) CHECK(!same_file(a, b), "%s differs with another seed", names[k]);
    }
    check_stream_matches(tmp);
    check_long_tail();
    char *bad[] = {"synth", "--interests", "30", "--out", tmp};
    CHECK(synth_main(5, bad) == 2, "interests > clusters is refused");
    char *unknown[] = {"synth", "--bogus", "1"};
    CHECK(synth_main(3, unknown) == 2, "unknown flag exits 2");

    rows_t tr = read_rows(dir, "train.csv", 0), dv = read_rows(dir, "dev.csv", 1), te = read_rows(dir, "test.csv", 1);
    rows_t cl = read_rows(dir, "item_clusters.csv", 0);
    CHECK(tr.ok && dv.ok && te.ok && cl.ok, "files parse");
    int64_t I = cl.n; /* item ids 1..I */
    int64_t *cluster = calloc(I + 1, 8);
    int64_t bad_cl = 0;
    for (int64_t r = 0; r < cl.n; r++) {
        int good = cl.u[r] == r + 1 && cl.i[r] >= 0 && cl.i[r] < 20;
        bad_cl += !good;
        if (good) cluster[r + 1] = cl.i[r];
    }
    CHECK(cl.n > 0 && bad_cl == 0, "item_clusters.csv lists items 1..n with clusters 0..19 (%lld bad)", (long long)bad_cl);
    /* ids in range, per-user counts and clicked sets, train in time order */
    int64_t *count = calloc(U + 1, 8), *pop = calloc(I + 1, 8), max_item = 0, max_user = 0, unsorted = 0, bad_id = 0;
    unsigned char *clicked = calloc((U + 1) * (I + 1), 1);
    rows_t *files[3] = {&tr, &dv, &te};
    for (int k = 0; k < 3; k++)
        for (int64_t r = 0; r < files[k]->n; r++) {
            int64_t u = files[k]->u[r], i = files[k]->i[r];
            if (u < 1 || u > U || i < 1 || i > I) {
                bad_id++;
                continue;
            }
            count[u]++;
            clicked[u * (I + 1) + i] = 1;
            if (k == 0) pop[i]++;
            if (u > max_user) max_user = u;
            if (i > max_item) max_item = i;
            if (k == 0 && r > 0 && tr.t[r] < tr.t[r - 1]) unsorted++;
        }
    CHECK(bad_id == 0, "%lld rows with ids out of range", (long long)bad_id);
    CHECK(max_user == U && max_item == I, "every user and every listed item occurs (%lld, %lld)", (long long)max_user,
          (long long)max_item);
    CHECK(unsorted == 0, "train in time order");
    int64_t short_users = 0, total = 0;
    for (int64_t u = 1; u <= U; u++) short_users += count[u] <= 2, total += count[u];
    CHECK(total == U * 30, "total interactions %lld", (long long)total);
    CHECK(short_users > 0, "some users have 1-2 interactions");
    printf("synth: %lld users, %lld items, %lld interactions, %lld users with <= 2\n", (long long)U, (long long)I,
           (long long)total, (long long)short_users);

    /* negatives */
    int64_t bad_neg = 0;
    for (int k = 1; k < 3; k++) {
        CHECK(files[k]->n_neg == N_NEG, "%lld negatives per row (got %d)", (long long)N_NEG, files[k]->n_neg);
        for (int64_t r = 0; files[k]->n_neg == N_NEG && r < files[k]->n; r++)
            for (int j = 0; j < N_NEG; j++) {
                int64_t v = files[k]->neg[r * N_NEG + j];
                bad_neg += v < 1 || v > I || clicked[files[k]->u[r] * (I + 1) + v];
            }
    }
    CHECK(bad_neg == 0, "%lld invalid negatives", (long long)bad_neg);

    /* planted structure on dev: history = the user's train rows (all precede dev) */
    int64_t *hist_cl = calloc((U + 1) * 20, 8);
    for (int64_t r = 0; r < tr.n; r++) hist_cl[tr.u[r] * 20 + cluster[tr.i[r]]]++;
    double aff_hits = 0, pop_hits = 0, sa[100], sp[100];
    for (int64_t r = 0; dv.n_neg == N_NEG && r < dv.n; r++) {
        const int64_t *h = hist_cl + dv.u[r] * 20;
        for (int j = 0; j < N_NEG; j++) {
            int64_t v = dv.neg[r * N_NEG + j];
            sp[j] = (double)pop[v];
            sa[j] = (double)h[cluster[v]] * 1e6 + (double)pop[v];
        }
        int64_t t = dv.i[r];
        aff_hits += hit10((double)h[cluster[t]] * 1e6 + (double)pop[t], sa, N_NEG);
        pop_hits += hit10((double)pop[t], sp, N_NEG);
    }
    double hr_aff = dv.n ? aff_hits / dv.n : 0, hr_pop = dv.n ? pop_hits / dv.n : 0;
    printf("dev HR@10 over %lld rows: cluster affinity %.3f, popularity %.3f\n", (long long)dv.n, hr_aff, hr_pop);
    CHECK(dv.n > U / 2, "dev rows %lld", (long long)dv.n);
    CHECK(hr_aff >= 2 * hr_pop, "affinity %.3f should beat popularity %.3f by 2x", hr_aff, hr_pop);
    CHECK(hr_aff > 0.5, "affinity HR@10 %.3f", hr_aff);
    CHECK(hr_pop > 0.1, "popularity still a (weak) signal above random 0.1: %.3f", hr_pop);

    /* multi-interest: long histories span several clusters with >= 3 items each */
    double spans = 0;
    int64_t long_users = 0;
    for (int64_t u = 1; u <= U; u++) {
        if (count[u] < 30) continue;
        int c3 = 0;
        for (int c = 0; c < 20; c++) c3 += hist_cl[u * 20 + c] >= 3;
        spans += c3, long_users++;
    }
    printf("users with >= 30 rows: %lld, mean clusters with >= 3 history items: %.2f\n", (long long)long_users,
           long_users ? spans / long_users : 0);
    CHECK(long_users > 0 && spans / long_users >= 2.0, "several interests per user");

    free(cluster), free(count), free(pop), free(clicked), free(hist_cl);
    rows_free(&tr), rows_free(&dv), rows_free(&te), rows_free(&cl);
    rm_dir(dir), rm_dir(dir2), rm_dir(dir3), rm_dir(tmp);
    return tu_finish("test_synth");
}
