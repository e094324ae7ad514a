/* The dataset reader: docs/MODEL.md "The corpus" on hand-made and random datasets (checked against
 * an independent brute-force sort), ml-100k, and every kind of bad input the issue lists. */
#include "test_util.h"
#include "data_util.h"
#include "timirec/corpus.h"
#include "timirec/rng.h"

static char err[2048];

static int load(const char *dir, corpus_t *c) {
    corpus_opts_t o = {.path = dir, .dataset = "", .sep = '\t'};
    return corpus_load(&o, c, err, sizeof err);
}

/* A small dataset with ties across files, unsorted train rows, a single-interaction user. */
static void test_hand_made(void) {
    const char *dir = du_tempdir("corpus");
    /* user 1: times 10 (train), 20 (train), 20 (dev, ties the train row: train comes first),
     *         30 (test).  user 2: one row only.  user 3: train rows out of time order. */
    du_write(dir, "train.csv", "user_id\titem_id\ttime\n"
                               "3\t7\t50\n"
                               "1\t4\t10\n"
                               "1\t5\t20\n"
                               "2\t9\t5\n"
                               "3\t8\t40\n");
    du_write(dir, "dev.csv", "user_id\titem_id\ttime\tneg_items\n"
                             "1\t6\t20\t[2, 3]\n"
                             "3\t2\t60\t[1, 9]\n");
    du_write(dir, "test.csv", "user_id\titem_id\ttime\tneg_items\n"
                              "1\t3\t30\t[9, 8]\n"
                              "3\t1\t70\t[4, 4]\n");
    corpus_t c;
    int rc = load(dir, &c);
    CHECK(rc == 0, "load: %s", err);
    if (rc) return;
    CHECK(c.n_users == 4, "n_users %d", c.n_users);
    CHECK(c.n_items == 10, "n_items %d", c.n_items);
    const corpus_phase_t *tr = &c.phase[PHASE_TRAIN], *dv = &c.phase[PHASE_DEV],
                         *ts = &c.phase[PHASE_TEST];
    int32_t want_train_pos[] = {1, 0, 1, 0, 0};
    for (int r = 0; r < 5; r++)
        CHECK(tr->position[r] == want_train_pos[r], "train row %d position %d", r, tr->position[r]);
    CHECK(dv->position[0] == 2 && dv->position[1] == 2, "dev positions %d %d", dv->position[0],
          dv->position[1]);
    CHECK(ts->position[0] == 3 && ts->position[1] == 3, "test positions");
    CHECK(tr->n_inst == 2 && tr->inst_row[0] == 0 && tr->inst_row[1] == 2, "train instances");
    CHECK(dv->n_inst == 2 && ts->n_inst == 2, "eval instances");
    CHECK(c.n_single_users == 1, "single users %lld", (long long)c.n_single_users);
    CHECK(dv->n_neg == 2 && dv->neg[2] == 1 && dv->neg[3] == 9, "dev negatives");
    /* Sequence of user 1: 4 (t10), 5 (t20 train), 6 (t20 dev), 3 (t30). User 3: 8, 7, 2, 1. */
    int32_t want1[] = {4, 5, 6, 3}, want3[] = {8, 7, 2, 1};
    CHECK(c.seq_off[2] - c.seq_off[1] == 4, "user 1 sequence length");
    for (int i = 0; i < 4; i++) {
        CHECK(c.seq_item[c.seq_off[1] + i] == want1[i], "user 1 item %d", i);
        CHECK(c.seq_item[c.seq_off[3] + i] == want3[i], "user 3 item %d", i);
    }
    /* History truncation: test row of user 3 with history_max 2 -> [7, 2]. */
    const int32_t *h;
    int32_t len = corpus_history(&c, 3, ts->position[1], 2, &h);
    CHECK(len == 2 && h[0] == 7 && h[1] == 2, "truncated history len %d", len);
    len = corpus_history(&c, 3, ts->position[1], 0, &h);
    CHECK(len == 3 && h[0] == 8, "history_max 0 keeps everything");
    /* Clicked sets: train of user 3 = {7, 8}; all of user 1 = {3, 4, 5, 6}. */
    CHECK(c.train_off[4] - c.train_off[3] == 2 && c.train_items[c.train_off[3]] == 7, "train set");
    CHECK(c.all_off[2] - c.all_off[1] == 4 && c.all_items[c.all_off[1]] == 3, "all set");
    CHECK(c.max_train_clicked == 2, "max train clicked %d", c.max_train_clicked);
    corpus_free(&c);

    /* The same files with CRLF line ends, extra columns, other column order, blank lines. */
    du_write(dir, "train.csv", "time\tlabel\titem_id\tuser_id\r\n"
                               "50\t1\t7\t3\r\n"
                               "10\t1\t4\t1\r\n"
                               "\r\n"
                               "20\t0\t5\t1\r\n"
                               "5\t1\t9\t2\r\n"
                               "40\t1\t8\t3\r\n");
    rc = load(dir, &c);
    CHECK(rc == 0, "CRLF load: %s", err);
    if (!rc) {
        CHECK(c.phase[PHASE_TRAIN].n_rows == 5, "CRLF rows");
        for (int r = 0; r < 5; r++)
            CHECK(c.phase[PHASE_TRAIN].position[r] == want_train_pos[r], "CRLF position %d", r);
        corpus_free(&c);
    }
    du_rm_rf(dir);
}

/* Random datasets with many time ties, against the brute-force sort; odd seeds write dev/test
 * without a neg_items column (valid: full-catalog evaluation needs none). */
static void test_random_against_brute_force(uint32_t seed) {
    const int with_neg = seed % 2 == 0;
    const char *dir = du_tempdir("corpus_rand");
    int n_users = 30 + (int)(rng_u32(seed, RNG_TEST, 0, 0, 0) % 40);
    int n_items = 20 + (int)(rng_u32(seed, RNG_TEST, 0, 0, 1) % 50);
    int rows[3] = {400, 40, 40};
    const char *names[3] = {"train.csv", "dev.csv", "test.csv"};
    uint64_t k = 1;
    for (int p = 0; p < 3; p++) {
        size_t cap = 64 + (size_t)rows[p] * 64;
        char *text = malloc(cap), *w = text;
        w += sprintf(w, p && with_neg ? "user_id\titem_id\ttime\tneg_items\n" : "user_id\titem_id\ttime\n");
        for (int r = 0; r < rows[p]; r++, k++) {
            int u = 1 + (int)(rng_u32(seed, RNG_TEST, 1, k, 0) % (uint32_t)n_users);
            int it = 1 + (int)(rng_u32(seed, RNG_TEST, 1, k, 1) % (uint32_t)n_items);
            int t = (int)(rng_u32(seed, RNG_TEST, 1, k, 2) % 25); /* many ties */
            w += sprintf(w, "%d\t%d\t%d", u, it, t);
            if (p && with_neg) w += sprintf(w, "\t[%d, %d]", 1 + (int)(k % 7), 1 + (int)(k % 11));
            *w++ = '\n';
        }
        *w = 0;
        du_write(dir, names[p], text);
        free(text);
    }
    corpus_t c;
    int rc = load(dir, &c);
    CHECK(rc == 0, "random load: %s", err);
    if (rc) return;
    for (int p = PHASE_DEV; p <= PHASE_TEST; p++)
        CHECK(c.phase[p].has_neg == with_neg && c.phase[p].n_neg == (with_neg ? 2 : 0) &&
                  (!with_neg || (c.phase[p].neg[0] == 1 + (int)(p == 1 ? 401 % 7 : 441 % 7))),
              "seed %u: %s negatives (has_neg %d, n_neg %d)", seed, corpus_phase_names[p], c.phase[p].has_neg,
              c.phase[p].n_neg);
    du_brute_t bf;
    du_brute_build(&c, &bf);
    int bad = 0, bad_hist = 0;
    int32_t *hist = malloc((size_t)bf.total * sizeof *hist);
    for (int p = 0; p < 3; p++)
        for (int64_t r = 0; r < c.phase[p].n_rows; r++) {
            int64_t g = bf.base[p] + r;
            int32_t want = du_brute_position(&bf, g);
            if (c.phase[p].position[r] != want) bad++;
            int32_t n = du_brute_history(&bf, g, 5, hist);
            const int32_t *h;
            int32_t len = corpus_history(&c, c.phase[p].user[r], c.phase[p].position[r], 5, &h);
            if (len != n || memcmp(h, hist, (size_t)n * sizeof *h) != 0) bad_hist++;
        }
    CHECK(bad == 0, "seed %u: %d positions differ from the brute-force sort", seed, bad);
    CHECK(bad_hist == 0, "seed %u: %d histories differ", seed, bad_hist);
    /* Instances: rows with position > 0, in file order. */
    for (int p = 0; p < 3; p++) {
        int64_t n = 0;
        for (int64_t r = 0; r < c.phase[p].n_rows; r++)
            if (c.phase[p].position[r] > 0) {
                if (n >= c.phase[p].n_inst || c.phase[p].inst_row[n] != r) bad++;
                n++;
            }
        CHECK(n == c.phase[p].n_inst, "instances of phase %d", p);
    }
    CHECK(bad == 0, "instance rows");
    free(hist);
    du_brute_free(&bf);
    corpus_free(&c);
    du_rm_rf(dir);
}

static void test_ml100k(void) {
    corpus_t c;
    corpus_opts_t o = {.path = "../shared/data", .dataset = "ml-100k", .sep = '\t'};
    if (access("../shared/data/ml-100k/train.csv", R_OK) != 0) {
        printf("SKIP part: ../shared/data/ml-100k absent\n");
        return;
    }
    double t0 = tmr_now();
    int rc = corpus_load(&o, &c, err, sizeof err);
    double secs = tmr_now() - t0;
    CHECK(rc == 0, "ml-100k: %s", err);
    if (rc) return;
    printf("ml-100k loaded in %.3f s: %d users, %d items, %lld/%lld/%lld instances\n", secs,
           c.n_users - 1, c.n_items - 1, (long long)c.phase[0].n_inst, (long long)c.phase[1].n_inst,
           (long long)c.phase[2].n_inst);
    CHECK(c.n_users == 944 && c.n_items == 1683, "ml-100k sizes %d %d", c.n_users, c.n_items);
    CHECK(c.phase[PHASE_DEV].n_neg == 1000, "ml-100k dev negatives %d", c.phase[PHASE_DEV].n_neg);
    CHECK(c.phase[PHASE_TRAIN].n_rows == 98114, "train rows %lld",
          (long long)c.phase[PHASE_TRAIN].n_rows);
    /* Every user's train rows come first in time, so each train row's position counts the
     * user's earlier train rows; spot-check dev/test positions against the brute force. */
    du_brute_t bf;
    du_brute_build(&c, &bf);
    int bad = 0;
    for (int p = 1; p < 3; p++)
        for (int64_t r = 0; r < c.phase[p].n_rows; r += 37)
            bad += c.phase[p].position[r] != du_brute_position(&bf, bf.base[p] + r);
    CHECK(bad == 0, "ml-100k: %d eval positions differ", bad);
    du_brute_free(&bf);
    corpus_free(&c);
}

/* One bad-input case: the load must fail with a message holding every fragment. */
static void expect_error(const char *train, const char *dev, const char *test,
                         const char *frag1, const char *frag2) {
    const char *dir = du_tempdir("corpus_bad");
    const char *ok_train = "user_id\titem_id\ttime\n1\t2\t1\n1\t3\t2\n";
    const char *ok_eval = "user_id\titem_id\ttime\tneg_items\n1\t4\t3\t[2, 3]\n";
    if (train) du_write(dir, "train.csv", train);
    else if (!frag1 || strcmp(frag1, "train.csv: cannot open") != 0) du_write(dir, "train.csv", ok_train);
    du_write(dir, "dev.csv", dev ? dev : ok_eval);
    du_write(dir, "test.csv", test ? test : ok_eval);
    corpus_t c;
    err[0] = 0;
    int rc = load(dir, &c);
    CHECK(rc == -1, "expected an error containing '%s'", frag1);
    if (rc == 0) corpus_free(&c);
    CHECK(strstr(err, frag1) != NULL, "message '%s' lacks '%s'", err, frag1);
    if (frag2) CHECK(strstr(err, frag2) != NULL, "message '%s' lacks '%s'", err, frag2);
    du_rm_rf(dir);
}

static void test_bad_inputs(void) {
    const char *H = "user_id\titem_id\ttime\n";
    char buf[512];
    expect_error(NULL, NULL, NULL, "train.csv: cannot open", "No such file");
    expect_error("", NULL, NULL, "train.csv: empty file", NULL);
    expect_error("\n\n", NULL, NULL, "train.csv: empty file", NULL);
    expect_error(H, NULL, NULL, "train.csv: no data rows", NULL);
    expect_error("user_id\titem_id\n1\t2\n", NULL, NULL, "train.csv:1: missing column time", NULL);
    /* The header's own line number, after leading blank lines. */
    expect_error("\n \r\nuser_id\titem_id\n1\t2\n", NULL, NULL, "train.csv:3: missing column time",
                 NULL);
    expect_error("user_id,item_id,time\n1,2,3\n", NULL, NULL, "train.csv:1: missing column user_id",
                 "separated by tab");
    expect_error("user_id\titem_id\ttime\titem_id\n1\t2\t3\t4\n", NULL, NULL,
                 "train.csv:1: column item_id appears twice", NULL);
    snprintf(buf, sizeof buf, "%s1\t2\t3\n1\t2\n", H);
    expect_error(buf, NULL, NULL, "train.csv:3: 2 fields but the header has 3", NULL);
    snprintf(buf, sizeof buf, "%s1\t2\t3\n1\t2\t3\t4\n", H);
    expect_error(buf, NULL, NULL, "train.csv:3: 4 fields", NULL);
    snprintf(buf, sizeof buf, "%s1\t2\t3\n1\tabc\t4\n", H);
    expect_error(buf, NULL, NULL, "train.csv:3: item_id \"abc\" is not an integer id", NULL);
    snprintf(buf, sizeof buf, "%s1\t2\t3\n1\t2.5\t4\n", H);
    expect_error(buf, NULL, NULL, "train.csv:3: item_id \"2.5\"", NULL);
    snprintf(buf, sizeof buf, "%s1\t2\t3\n-4\t2\t4\n", H);
    expect_error(buf, NULL, NULL, "train.csv:3: user_id -4 is negative", NULL);
    snprintf(buf, sizeof buf, "%s1\t2\t3\n0\t2\t4\n", H);
    expect_error(buf, NULL, NULL, "train.csv:3: user_id is 0, the padding id", NULL);
    snprintf(buf, sizeof buf, "%s1\t0\t3\n", H);
    expect_error(buf, NULL, NULL, "train.csv:2: item_id is 0", NULL);
    snprintf(buf, sizeof buf, "%s1\t2\t3\n1\t99999999999\t4\n", H);
    expect_error(buf, NULL, NULL, "train.csv:3: item_id \"99999999999\" is out of range", NULL);
    snprintf(buf, sizeof buf, "%s1\t2\tyesterday\n", H);
    expect_error(buf, NULL, NULL, "train.csv:2: time \"yesterday\" is not an integer", NULL);
    snprintf(buf, sizeof buf, "%s1\t2\t3\n%s1\t3\t4\n", H, H);
    expect_error(buf, NULL, NULL, "train.csv:3: the header line appears again", NULL);
    expect_error(NULL, "user_id\titem_id\ttime\tneg_items\n1\t4\t3\t[2, 3]\n1\t4\t5\t[2]\n", NULL,
                 "dev.csv:3: neg_items has 1 items but earlier rows have 2", NULL);
    expect_error(NULL, NULL, "user_id\titem_id\ttime\tneg_items\n1\t4\t3\t[2, 77]\n",
                 "test.csv:2: neg_items[1] = 77 is past the largest item id 4", NULL);
    expect_error(NULL, NULL, "user_id\titem_id\ttime\tneg_items\n1\t4\t3\t[2, 0]\n",
                 "test.csv:2: neg_items[1] is 0", NULL);
    expect_error(NULL, NULL, "user_id\titem_id\ttime\tneg_items\n1\t4\t3\t2, 3\n",
                 "test.csv:2: neg_items \"2, 3\" is not a list", NULL);
    expect_error(NULL, NULL, "user_id\titem_id\ttime\tneg_items\n1\t4\t3\t[2, x]\n",
                 "test.csv:2: neg_items[1] \"x\" is not an integer id", NULL);
    /* Ten digits past 2^32 (4294967298 = 2^32 + 2) must not wrap to a small valid id. */
    expect_error(NULL, NULL, "user_id\titem_id\ttime\tneg_items\n1\t4\t3\t[2, 4294967298]\n",
                 "test.csv:2: neg_items[1] \"4294967298\" is out of range", NULL);
    snprintf(buf, sizeof buf, "%s1\t2000000000\t3\n", H);
    expect_error(buf, NULL, NULL, "largest item_id is 2000000000", "renumber");
}

/* A user with one interaction has no instance; the others are unaffected. */
static void test_single_interaction_user(void) {
    const char *dir = du_tempdir("corpus_single");
    du_write(dir, "train.csv", "user_id\titem_id\ttime\n1\t2\t1\n2\t3\t1\n1\t4\t2\n");
    du_write(dir, "dev.csv", "user_id\titem_id\ttime\tneg_items\n1\t5\t3\t[2]\n");
    du_write(dir, "test.csv", "user_id\titem_id\ttime\tneg_items\n1\t6\t4\t[3]\n");
    corpus_t c;
    int rc = load(dir, &c);
    CHECK(rc == 0, "%s", err);
    if (rc) return;
    CHECK(c.n_single_users == 1, "one single-interaction user");
    CHECK(c.phase[PHASE_TRAIN].n_inst == 1 && c.phase[PHASE_TRAIN].inst_row[0] == 2,
          "user 2's only row is no instance");
    corpus_free(&c);
    du_rm_rf(dir);
}

/* Random byte mutations of a valid dataset: every load either succeeds with consistent
 * indexes or fails with a message naming one of the files; never a crash (this test also
 * runs under ASan/UBSan in `make asan`). */
static void test_mutations(void) {
    const char *dir = du_tempdir("corpus_mut");
    const char *train = "user_id\titem_id\ttime\n1\t2\t10\n1\t3\t11\n2\t4\t12\n2\t2\t13\n3\t5\t14\n";
    const char *eval = "user_id\titem_id\ttime\tneg_items\n1\t4\t20\t[2, 5, 3]\n2\t5\t21\t[3, 1, 1]\n";
    static const char alphabet[] = "0123456789\t\n\r[], -\"x\0";
    int crashes_avoided = 0, ok = 0, bad_msg = 0;
    for (uint64_t trial = 0; trial < 3000; trial++) {
        char buf[3][256];
        const char *src[3] = {train, eval, eval};
        size_t len[3];
        for (int f = 0; f < 3; f++) {
            len[f] = strlen(src[f]);
            memcpy(buf[f], src[f], len[f] + 1);
        }
        int f = (int)(trial % 3);
        int n_mut = 1 + (int)(rng_u32(9, RNG_TEST, 5, trial, 0) % 4);
        for (int m = 0; m < n_mut; m++) {
            uint32_t w = rng_u32(9, RNG_TEST, 5, trial, 1 + (uint32_t)m);
            size_t at = w % len[f];
            int op = (int)((w >> 16) % 3);
            char ch = alphabet[(w >> 20) % (sizeof alphabet - 1)];
            if (op == 0) buf[f][at] = ch;                       /* replace */
            else if (op == 1 && len[f] > 1) {                   /* delete */
                memmove(buf[f] + at, buf[f] + at + 1, len[f] - at);
                len[f]--;
            } else if (len[f] + 2 < sizeof buf[f]) {            /* insert */
                memmove(buf[f] + at + 1, buf[f] + at, len[f] - at + 1);
                buf[f][at] = ch;
                len[f]++;
            }
        }
        const char *names[3] = {"train.csv", "dev.csv", "test.csv"};
        for (int k = 0; k < 3; k++) {
            char path[512];
            snprintf(path, sizeof path, "%s/%s", dir, names[k]);
            FILE *fp = fopen(path, "wb");
            fwrite(buf[k], 1, len[k], fp); /* may contain NUL bytes */
            fclose(fp);
        }
        corpus_t c;
        err[0] = 0;
        if (load(dir, &c) == 0) {
            ok++;
            /* Consistent: every history item is a real item below n_items. */
            for (int p = 0; p < N_PHASES; p++)
                for (int64_t k = 0; k < c.phase[p].n_inst; k++) {
                    int64_t r = c.phase[p].inst_row[k];
                    const int32_t *h;
                    int32_t n = corpus_history(&c, c.phase[p].user[r], c.phase[p].position[r], 2, &h);
                    for (int32_t i = 0; i < n; i++)
                        if (h[i] <= 0 || h[i] >= c.n_items) bad_msg++;
                }
            corpus_free(&c);
        } else {
            crashes_avoided++;
            if (!strstr(err, ".csv")) bad_msg++;
        }
    }
    CHECK(bad_msg == 0, "%d mutated loads gave an inconsistent corpus or a message naming no file",
          bad_msg);
    printf("mutations: %d loaded, %d rejected with a message\n", ok, crashes_avoided);
    du_rm_rf(dir);
}

int main(void) {
    test_mutations();
    test_hand_made();
    for (uint32_t s = 1; s <= 5; s++) test_random_against_brute_force(s);
    test_bad_inputs();
    test_single_interaction_user();
    test_ml100k();
    return tu_finish("test_corpus");
}
