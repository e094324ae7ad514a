/* prepare: (a) reproduces ../shared/data/ml-100k from raw/ml-100k/u.data (train.csv byte for
 * byte, the user/item/time columns of dev and test); (b) hand-made and random logs against the
 * recipe (duplicates, stable ties, 1/2/3-row users, renumbering, a naive oracle), negatives
 * redrawn exactly as the spec says and never the user's items, seed determinism, the
 * every-item error; (c) bad input of every format names the file and the line; (d) seq times
 * are the running index; the CLI's exit codes. Part (a) needs ../shared/data: without it the
 * other parts still run and the test reports SKIP. */
#include "test_util.h"
#include "data_util.h"
#include "timirec/prepare.h"
#include "timirec/rng.h"

#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_tmp[256]; /* this run's scratch folder under /tmp */

/* ---- small file helpers ---------------------------------------------------------------- */

/* Remove a folder's files (flat) and the folder. */
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

static int n_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* ---- reading prepared files back ---------------------------------------------------------- */

typedef struct {
    int64_t n;
    int64_t *u, *i, *t;
    int n_neg;      /* per row (checked equal on every row), -1 without the column */
    int64_t *neg;   /* (n, n_neg) */
    int ok;         /* parsed cleanly */
} split_t;

static void split_free(split_t *s) {
    free(s->u), free(s->i), free(s->t), free(s->neg);
    memset(s, 0, sizeof *s);
}

static split_t read_split(const char *dir, const char *name) {
    split_t s = {0, NULL, NULL, NULL, -1, NULL, 0};
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = du_read_all(path, NULL);
    if (!text) return s;
    char *p = strchr(text, '\n');
    int has_neg = p && strstr(text, "neg_items") && strstr(text, "neg_items") < p;
    int64_t cap = 1024;
    s.u = malloc(cap * 8), s.i = malloc(cap * 8), s.t = malloc(cap * 8);
    int64_t neg_cap = 1024;
    s.neg = malloc(neg_cap * 8);
    int64_t neg_n = 0;
    s.ok = p != NULL;
    while (p && p[1]) {
        p++;
        if (s.n == cap) {
            cap *= 2;
            s.u = realloc(s.u, cap * 8), s.i = realloc(s.i, cap * 8), s.t = realloc(s.t, cap * 8);
        }
        char *e;
        s.u[s.n] = strtoll(p, &e, 10);
        s.ok &= *e == '\t';
        s.i[s.n] = strtoll(e + 1, &e, 10);
        s.ok &= *e == '\t';
        s.t[s.n] = strtoll(e + 1, &e, 10);
        if (has_neg) {
            s.ok &= e[0] == '\t' && e[1] == '[';
            e += 2;
            int cnt = 0;
            while (*e != ']' && *e != '\n' && *e) {
                if (neg_n == neg_cap) s.neg = realloc(s.neg, (neg_cap *= 2) * 8);
                s.neg[neg_n++] = strtoll(e, &e, 10);
                cnt++;
                if (e[0] == ',') {
                    s.ok &= e[1] == ' ';
                    e += 2;
                }
            }
            s.ok &= *e == ']';
            if (*e == ']') e++;
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

/* The three files of one prepared folder. */
typedef struct {
    split_t train, dev, test;
    int64_t n_users, n_items; /* max ids */
} prepared_t;

static prepared_t read_prepared(const char *dir) {
    prepared_t p;
    p.train = read_split(dir, "train.csv");
    p.dev = read_split(dir, "dev.csv");
    p.test = read_split(dir, "test.csv");
    p.n_users = p.n_items = 0;
    split_t *all[3] = {&p.train, &p.dev, &p.test};
    for (int k = 0; k < 3; k++)
        for (int64_t r = 0; r < all[k]->n; r++) {
            if (all[k]->u[r] > p.n_users) p.n_users = all[k]->u[r];
            if (all[k]->i[r] > p.n_items) p.n_items = all[k]->i[r];
        }
    return p;
}

static void prepared_free(prepared_t *p) {
    split_free(&p->train), split_free(&p->dev), split_free(&p->test);
}

/* Negatives of every dev/test row: in 1..n_items, never an item of the user (any file), and
 * exactly what the spec's draw gives: rng_below(seed, RNG_PREPARE_NEG, epoch (test 0, dev 1),
 * row * n_neg + j, &draw, n_items) + 1, redrawn from the same stream while clicked. */
static void check_negatives(const prepared_t *p, int n_neg, uint64_t seed, const char *what) {
    int64_t U = p->n_users + 1, I = p->n_items + 1;
    unsigned char *clicked = calloc((size_t)(U * I), 1);
    const split_t *all[3] = {&p->train, &p->dev, &p->test};
    for (int k = 0; k < 3; k++)
        for (int64_t r = 0; r < all[k]->n; r++) clicked[all[k]->u[r] * I + all[k]->i[r]] = 1;
    int64_t bad_range = 0, bad_clicked = 0, bad_draw = 0;
    for (int epoch = 0; epoch < 2; epoch++) {
        const split_t *s = epoch == 0 ? &p->test : &p->dev;
        CHECK(s->ok, "%s: %s parses", what, epoch ? "dev" : "test");
        CHECK(s->n == 0 || s->n_neg == n_neg, "%s: %d negatives per row, want %d", what, s->n_neg, n_neg);
        if (s->n_neg != n_neg) continue;
        for (int64_t r = 0; r < s->n; r++)
            for (int j = 0; j < n_neg; j++) {
                int64_t v = s->neg[r * n_neg + j];
                if (v < 1 || v > p->n_items) {
                    bad_range++;
                    continue;
                }
                bad_clicked += clicked[s->u[r] * I + v];
                uint32_t draw = 0, want;
                do want = rng_below(seed, RNG_PREPARE_NEG, (uint32_t)epoch, (uint64_t)(r * n_neg + j), &draw,
                                    (uint32_t)p->n_items) + 1;
                while (clicked[s->u[r] * I + want]);
                bad_draw += (int64_t)want != v;
            }
    }
    CHECK(bad_range == 0, "%s: %lld negatives out of 1..n_items", what, (long long)bad_range);
    CHECK(bad_clicked == 0, "%s: %lld negatives the user interacted with", what, (long long)bad_clicked);
    CHECK(bad_draw == 0, "%s: %lld negatives differ from the spec's draw", what, (long long)bad_draw);
    free(clicked);
}

/* ---- (a) ml-100k reproduction ----------------------------------------------------------- */

/* The first three tab-separated columns of every line of a file, joined. */
static char *first3(const char *path) {
    char *text = du_read_all(path, NULL);
    if (!text) return NULL;
    char *out = malloc(strlen(text) + 1), *o = out;
    for (char *p = text; *p;) {
        int tabs = 0;
        while (*p && *p != '\n') {
            if (*p == '\t') tabs++;
            if (tabs < 3) *o++ = *p;
            p++;
        }
        if (*p == '\n') *o++ = *p++;
    }
    *o = '\0';
    free(text);
    return out;
}

static int part_ml100k(void) {
    const char *ref = "../shared/data/ml-100k", *raw = "../shared/data/raw/ml-100k/u.data";
    if (access(raw, R_OK) != 0 || access("../shared/data/ml-100k/train.csv", R_OK) != 0) return 0;
    char out[300], err[1024];
    snprintf(out, sizeof out, "%s/ml100k", g_tmp);
    interactions_t x;
    double t0 = tmr_now();
    int rc = interactions_read(raw, "udata", &x, err, sizeof err);
    CHECK(rc == 0, "read u.data: %s", err);
    if (rc) return 1;
    prepare_stats_t st;
    rc = prepare_write_stats(&x, out, 1000, 0, &st, err, sizeof err);
    double secs = tmr_now() - t0;
    CHECK(rc == 0, "prepare ml-100k: %s", err);
    interactions_free(&x);
    if (rc) return 1;
    printf("ml-100k: %lld users, %lld items, %lld rows; train %lld dev %lld test %lld; %.3f s\n",
           (long long)st.n_users, (long long)st.n_items, (long long)st.n_rows, (long long)st.n_train,
           (long long)st.n_dev, (long long)st.n_test, secs);
    CHECK(st.n_users == 943 && st.n_items == 1682 && st.n_rows == 100000, "ml-100k sizes");

    char a[400], b[400];
    snprintf(a, sizeof a, "%s/train.csv", out);
    snprintf(b, sizeof b, "%s/train.csv", ref);
    size_t la = 0, lb = 0;
    char *ta = du_read_all(a, &la), *tb = du_read_all(b, &lb);
    CHECK(ta && tb && la == lb && memcmp(ta, tb, la) == 0, "train.csv differs from the reference (%zu vs %zu bytes)", la, lb);
    free(ta), free(tb);
    for (int k = 0; k < 2; k++) {
        const char *name = k ? "dev.csv" : "test.csv";
        snprintf(a, sizeof a, "%s/%s", out, name);
        snprintf(b, sizeof b, "%s/%s", ref, name);
        ta = first3(a), tb = first3(b);
        CHECK(ta && tb && strcmp(ta, tb) == 0, "%s: user/item/time columns differ from the reference", name);
        free(ta), free(tb);
    }
    prepared_t p = read_prepared(out);
    CHECK(p.train.ok && p.train.n == 98114, "train rows %lld", (long long)p.train.n);
    check_negatives(&p, 1000, 0, "ml-100k");
    prepared_free(&p);
    return 1;
}

/* ---- (b) hand-made and random logs ----------------------------------------------------- */

static void set_rows(interactions_t *x, const int64_t (*rows)[3], int64_t n) {
    x->n = n;
    x->user = malloc(n * 8), x->item = malloc(n * 8), x->time = malloc(n * 8);
    for (int64_t r = 0; r < n; r++) x->user[r] = rows[r][0], x->item[r] = rows[r][1], x->time[r] = rows[r][2];
}

static int rows_are(const split_t *s, const int64_t (*want)[3], int64_t n) {
    if (!s->ok || s->n != n) return 0;
    for (int64_t r = 0; r < n; r++)
        if (s->u[r] != want[r][0] || s->i[r] != want[r][1] || s->t[r] != want[r][2]) return 0;
    return 1;
}

static int same_file(const char *d1, const char *d2, const char *name) {
    char a[400], b[400];
    snprintf(a, sizeof a, "%s/%s", d1, name);
    snprintf(b, sizeof b, "%s/%s", d2, name);
    size_t la = 0, lb = 0;
    char *ta = du_read_all(a, &la), *tb = du_read_all(b, &lb);
    int same = ta && tb && la == lb && memcmp(ta, tb, la) == 0;
    free(ta), free(tb);
    return same;
}

static void part_handmade(void) {
    const int64_t A = 9000000000123LL, B = 42, C = 7, D = 123456789012LL;
    const int64_t raw[][3] = {
        {A, 300, 50}, {B, 8, 20},  {A, 55, 10},          {C, 1000003, 30}, {A, 300, 50} /* dup */,
        {D, 8, 40},   {A, 99999999999LL, 60}, {D, 55, 40} /* tie after D8 */, {B, 300, 20} /* tie */,
        {D, 300, 70}, {A, 8, 60},  {D, 55, 40} /* dup */,
    };
    /* users C,B,D,A -> 1..4; items 8,55,300,1000003,99999999999 -> 1..5 */
    const int64_t want_train[][3] = {{4, 2, 10}, {2, 1, 20}, {1, 4, 30}, {3, 1, 40}, {4, 3, 50}};
    const int64_t want_dev[][3] = {{3, 2, 40}, {4, 5, 60}};
    const int64_t want_test[][3] = {{2, 3, 20}, {4, 1, 60}, {3, 3, 70}};
    interactions_t x;
    set_rows(&x, raw, (int64_t)(sizeof raw / sizeof raw[0]));
    char d1[300], d2[300], d3[300], err[1024];
    snprintf(d1, sizeof d1, "%s/hand1", g_tmp);
    snprintf(d2, sizeof d2, "%s/hand2", g_tmp);
    snprintf(d3, sizeof d3, "%s/hand3", g_tmp);
    prepare_stats_t st;
    int rc = prepare_write_stats(&x, d1, 7, 3, &st, err, sizeof err);
    CHECK(rc == 0, "hand-made prepare: %s", err);
    CHECK(st.n_duplicates == 2 && st.n_rows == 10 && st.n_users == 4 && st.n_items == 5, "stats: dup %lld rows %lld",
          (long long)st.n_duplicates, (long long)st.n_rows);
    CHECK(prepare_write(&x, d2, 7, 3, err, sizeof err) == 0, "same seed: %s", err);
    CHECK(prepare_write(&x, d3, 7, 4, err, sizeof err) == 0, "other seed: %s", err);
    prepared_t p = read_prepared(d1);
    CHECK(rows_are(&p.train, want_train, 5), "train rows (dups dropped, stable ties, first row stays)");
    CHECK(rows_are(&p.dev, want_dev, 2), "dev rows: second-last of users with >= 3 rows");
    CHECK(rows_are(&p.test, want_test, 3), "test rows: last of users with >= 2 rows");
    check_negatives(&p, 7, 3, "hand-made");
    /* user 4 (A) touched items 1,2,3,5: every negative must be 4 */
    for (int j = 0; j < 7 && p.test.n_neg == 7; j++) CHECK(p.test.neg[1 * 7 + j] == 4, "A's negative %d", j);
    prepared_free(&p);
    const char *names[3] = {"train.csv", "dev.csv", "test.csv"};
    for (int k = 0; k < 3; k++) CHECK(same_file(d1, d2, names[k]), "%s deterministic for a seed", names[k]);
    CHECK(same_file(d1, d3, "train.csv"), "train does not depend on the seed");
    CHECK(!same_file(d1, d3, "dev.csv") && !same_file(d1, d3, "test.csv"), "another seed, other negatives");
    interactions_free(&x);
    rm_dir(d1), rm_dir(d2), rm_dir(d3);

    /* A user who interacted with every item: an error, and no file left behind. */
    const int64_t full[][3] = {{1, 10, 1}, {1, 20, 2}, {1, 10, 3}, {2, 10, 1}};
    set_rows(&x, full, 4);
    snprintf(d1, sizeof d1, "%s/full", g_tmp);
    err[0] = '\0';
    rc = prepare_write(&x, d1, 5, 0, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "every item"), "every-item user: rc %d, '%s'", rc, err);
    CHECK(n_files(d1) == 0, "no files left after the error (%d)", n_files(d1));
    interactions_free(&x);
    rm_dir(d1);
}

/* A naive oracle: dedupe O(n^2), qsort by (time, user, original index), split by counts. */
typedef struct {
    int64_t u, i, t, idx;
} orow_t;

static int cmp_orow(const void *a, const void *b) {
    const orow_t *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    if (x->u != y->u) return x->u < y->u ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int64_t rank_of(const int64_t *sorted, int64_t n, int64_t v) {
    const int64_t *p = bsearch(&v, sorted, (size_t)n, 8, cmp_i64);
    return p ? (int64_t)(p - sorted) + 1 : -1;
}

static int64_t uniq(int64_t *v, int64_t n) {
    qsort(v, (size_t)n, 8, cmp_i64);
    int64_t m = 0;
    for (int64_t k = 0; k < n; k++)
        if (m == 0 || v[k] != v[m - 1]) v[m++] = v[k];
    return m;
}

static void check_against_oracle(const interactions_t *x, const char *dir, const char *what) {
    int64_t n = x->n, m = 0;
    orow_t *rows = malloc(n * sizeof *rows);
    for (int64_t r = 0; r < n; r++) {
        int dup = 0;
        for (int64_t q = 0; q < r && !dup; q++)
            dup = x->user[q] == x->user[r] && x->item[q] == x->item[r] && x->time[q] == x->time[r];
        if (!dup) rows[m++] = (orow_t){x->user[r], x->item[r], x->time[r], r};
    }
    qsort(rows, (size_t)m, sizeof *rows, cmp_orow);
    int64_t *us = malloc(m * 8), *is = malloc(m * 8);
    for (int64_t k = 0; k < m; k++) us[k] = rows[k].u, is[k] = rows[k].i;
    int64_t nu = uniq(us, m), ni = uniq(is, m);
    int64_t *cnt = calloc(nu + 1, 8), *seen = calloc(nu + 1, 8);
    int *role = malloc(m * sizeof(int));
    for (int64_t k = 0; k < m; k++) cnt[rank_of(us, nu, rows[k].u)]++;
    for (int64_t k = m; k-- > 0;) {
        int64_t u = rank_of(us, nu, rows[k].u), s = seen[u]++;
        role[k] = (s == 0 && cnt[u] >= 2) ? 2 : (s == 1 && cnt[u] >= 3) ? 1 : 0;
    }
    prepared_t p = read_prepared(dir);
    const split_t *files[3] = {&p.train, &p.dev, &p.test};
    int64_t at[3] = {0, 0, 0}, bad = 0;
    for (int64_t k = 0; k < m; k++) {
        const split_t *s = files[role[k]];
        int64_t r = at[role[k]]++;
        if (r >= s->n || s->u[r] != rank_of(us, nu, rows[k].u) || s->i[r] != rank_of(is, ni, rows[k].i) ||
            s->t[r] != rows[k].t)
            bad++;
    }
    CHECK(bad == 0 && at[0] == p.train.n && at[1] == p.dev.n && at[2] == p.test.n,
          "%s: %lld rows differ from the oracle", what, (long long)bad);
    CHECK(p.n_items == ni && p.n_users == nu, "%s: %lld items %lld users", what, (long long)p.n_items, (long long)p.n_users);
    check_negatives(&p, 20, 11, what);
    prepared_free(&p);
    free(rows), free(us), free(is), free(cnt), free(seen), free(role);
}

/* Random logs with many ties and duplicates; sparse huge ids (the sort path) and dense small
 * ids (the table path). */
static void part_random(void) {
    for (int sparse = 0; sparse < 2; sparse++) {
        interactions_t x;
        int64_t n = 3000;
        x.n = n;
        x.user = malloc(n * 8), x.item = malloc(n * 8), x.time = malloc(n * 8);
        for (int64_t r = 0; r < n; r++) {
            uint32_t u = rng_u32(5, RNG_TEST, sparse, r, 0) % 120, i = rng_u32(5, RNG_TEST, sparse, r, 1) % 400;
            x.user[r] = sparse ? (int64_t)u * 77777777777LL + 3 : (int64_t)u + 1;
            x.item[r] = sparse ? (int64_t)i * 1234567891LL + 9 : (int64_t)i + 5;
            x.time[r] = sparse ? (int64_t)(rng_u32(5, RNG_TEST, sparse, r, 2) % 40) * 1000000007LL - 5
                               : (int64_t)(rng_u32(5, RNG_TEST, sparse, r, 2) % 40);
        }
        for (int64_t r = 0; r + 1 < n; r += 17) /* exact duplicates */
            x.user[r + 1] = x.user[r], x.item[r + 1] = x.item[r], x.time[r + 1] = x.time[r];
        char d[300], err[1024];
        snprintf(d, sizeof d, "%s/random%d", g_tmp, sparse);
        int rc = prepare_write(&x, d, 20, 11, err, sizeof err);
        CHECK(rc == 0, "random prepare: %s", err);
        if (rc == 0) check_against_oracle(&x, d, sparse ? "random sparse ids" : "random dense ids");
        interactions_free(&x);
        rm_dir(d);
    }
}

/* ---- (c) bad input, (d) seq times, CLI ------------------------------------------------- */

/* The message must start "PATH:LINE: " (text.h's format: file and line, compiler style). */
static void expect_error(const char *format, const char *content, int want_line, const char *label) {
    char path[300], err[1024] = "", prefix[340];
    snprintf(path, sizeof path, "%s/bad_%s_%s.txt", g_tmp, format, label);
    snprintf(prefix, sizeof prefix, "%s:%d: ", path, want_line);
    du_write_path(path, content);
    interactions_t x;
    int rc = interactions_read(path, format, &x, err, sizeof err);
    CHECK(rc == -1, "%s/%s: accepted bad input", format, label);
    CHECK(strncmp(err, prefix, strlen(prefix)) == 0, "%s/%s: message starts '%s': '%s'", format,
          label, prefix, err);
    CHECK(x.n == 0 && x.user == NULL, "%s/%s: output left empty", format, label);
    unlink(path);
}

static void part_bad_input(void) {
    const char *formats[4] = {"udata", "movielens", "csv", "seq"};
    for (int f = 0; f < 4; f++) expect_error(formats[f], "", 1, "empty");
    expect_error("udata", "1\t2\t3\t100\n1\tx\t3\t101\n", 2, "nonnum");
    expect_error("udata", "1\t2\t3\t100\n\n1\t2\t3\n", 3, "count");
    expect_error("udata", "1\t2\t3\t100\n1\t2\t3\t4\t5\n", 2, "count2");
    expect_error("udata", "1\t2\tgood\t100\n", 1, "rating");
    expect_error("movielens", "1::2::5::100\n1::2::5\n", 2, "count");
    expect_error("movielens", "1::2::5::100\r\n1::2::5::1e\r\n", 2, "nonnum");
    expect_error("movielens", "1\t2\t5\t100\n", 1, "sep");
    expect_error("csv", "user_id,item_id,time\n1,2,3\n1,2\n", 3, "count");
    expect_error("csv", "time\tuser_id\titem_id\n5\t1\tq\n", 2, "nonnum");
    expect_error("csv", "user_id,item,time\n1,2,3\n", 1, "header");
    expect_error("csv", "user_id,item_id,time\n", 2, "norows");
    expect_error("csv", "user_id,item_id,time\n1,2,99999999999999999999\n", 2, "overflow");
    expect_error("seq", "1 2 3\n2\n", 2, "count");
    expect_error("seq", "1 2 3\n\n1 2 x\n", 3, "nonnum");
    char err[1024] = "";
    interactions_t x;
    const char *missing = "/nonexistent/timirec/u.data";
    const char *want = "/nonexistent/timirec/u.data: cannot open: ";
    CHECK(interactions_read(missing, "udata", &x, err, sizeof err) == -1 &&
          strncmp(err, want, strlen(want)) == 0, "missing file: '%s'", err);
    CHECK(interactions_read(missing, "parquet", &x, err, sizeof err) == -1 && strstr(err, "parquet"), "unknown format: '%s'", err);
}

static void part_good_input(void) {
    char path[300], err[1024] = "";
    interactions_t x;
    snprintf(path, sizeof path, "%s/seq.txt", g_tmp);
    du_write_path(path, "5 10 11 12\n3 10 13\n\n5 14");
    int rc = interactions_read(path, "seq", &x, err, sizeof err);
    CHECK(rc == 0 && x.n == 6, "seq read: %s", err);
    const int64_t want[6][3] = {{5, 10, 0}, {5, 11, 1}, {5, 12, 2}, {3, 10, 3}, {3, 13, 4}, {5, 14, 5}};
    for (int64_t r = 0; rc == 0 && r < 6; r++)
        CHECK(x.user[r] == want[r][0] && x.item[r] == want[r][1] && x.time[r] == want[r][2], "seq row %lld", (long long)r);
    interactions_free(&x);

    snprintf(path, sizeof path, "%s/any.csv", g_tmp);
    du_write_path(path, "time,label,item_id,user_id\r\n100,zz,5,7\r\n101,,6,7\r\n");
    rc = interactions_read(path, "csv", &x, err, sizeof err);
    CHECK(rc == 0 && x.n == 2 && x.user[0] == 7 && x.item[0] == 5 && x.time[0] == 100 && x.item[1] == 6,
          "csv with columns in any order: %s", err);
    interactions_free(&x);
    snprintf(path, sizeof path, "%s/ml.dat", g_tmp);
    du_write_path(path, "1::1193::5::978300760\n1::661::3.5::978302109\n");
    rc = interactions_read(path, "movielens", &x, err, sizeof err);
    CHECK(rc == 0 && x.n == 2 && x.item[1] == 661 && x.time[1] == 978302109, "movielens: %s", err);
    interactions_free(&x);
}

static void part_cli(void) {
    char in[300], out[300];
    snprintf(in, sizeof in, "%s/cli.txt", g_tmp);
    snprintf(out, sizeof out, "%s/cli_out", g_tmp);
    du_write_path(in, "1 1 2 3 4\n2 2 3 5 6 7\n3 1 7\n");
    char *help[] = {"prepare", "--help"};
    char *bogus[] = {"prepare", "--format", "seq", in, out, "--bogus", "1"};
    char *one[] = {"prepare", "--format", "seq", in};
    char *nofmt[] = {"prepare", in, out};
    char *badval[] = {"prepare", "--format", "seq", in, out, "--neg_items", "many"};
    char *badfmt[] = {"prepare", "--format", "xml", in, out};
    char *missing[] = {"prepare", "--format", "seq", "/nonexistent/x.txt", out};
    char *good[] = {"prepare", in, "--neg_items", "2", out, "--format=seq", "--seed", "9"};
    CHECK(prepare_main(2, help) == 0, "--help exits 0");
    CHECK(prepare_main(7, bogus) == 2, "unknown flag exits 2");
    CHECK(prepare_main(4, one) == 2, "missing OUTDIR exits 2");
    CHECK(prepare_main(3, nofmt) == 2, "missing --format exits 2");
    CHECK(prepare_main(7, badval) == 2, "malformed value exits 2");
    CHECK(prepare_main(5, badfmt) == 2, "unknown format exits 2");
    CHECK(prepare_main(5, missing) == 1, "missing input exits 1");
    CHECK(prepare_main(8, good) == 0, "flags anywhere");
    prepared_t p = read_prepared(out);
    CHECK(p.train.ok && p.train.n == 6 && p.dev.n == 2 && p.test.n == 3, "cli split %lld/%lld/%lld",
          (long long)p.train.n, (long long)p.dev.n, (long long)p.test.n);
    check_negatives(&p, 2, 9, "cli");
    prepared_free(&p);
    rm_dir(out);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/timirec_test_prepare_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    int had_data = part_ml100k();
    part_handmade();
    part_random();
    part_bad_input();
    part_good_input();
    part_cli();
    char d[300];
    snprintf(d, sizeof d, "%s/ml100k", g_tmp);
    rm_dir(d);
    rm_dir(g_tmp);
    if (!had_data && tu_failures == 0) {
        printf("SKIP: ml-100k reproduction needs ../shared/data (absent); %d other checks ok\n", tu_checks);
        return TU_SKIP;
    }
    return tu_finish("test_prepare");
}
