/* synth: a small dataset through `timirec synth` (in-process): ids in range, every dev/test row
 * has the requested negatives (valid, never the user's items), short users exist, train is in
 * time order, output identical for any thread count, and the planted structure shows: on dev,
 * a cluster-affinity scorer (history items sharing the candidate's cluster) beats popularity
 * (train counts) on HR@10 by at least 2x. */
#include "test_util.h"
#include "data_util.h"
#include "timirec/prepare.h"

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
