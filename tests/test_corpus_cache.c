/* The binary dataset cache (corpus_cache.h): a corpus read through the cache, written or
 * mapped, equals the parsed one array for array, bit for bit, on random datasets (ties,
 * repeated rows, files without neg_items, a BOM and CRLF, shuffled and extra columns); a
 * truncated, bit-flipped, foreign or stale cache is refused and rebuilt; --regenerate rebuilds;
 * a read-only folder gets no cache; several processes loading a clean folder at once build one
 * cache and all get the same corpus. */
#include "test_util.h"
#include "data_util.h"
#include "timirec/corpus.h"
#include "timirec/corpus_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

static char err[2048];

static uint64_t g_rng = 0x9E3779B97F4A7C15ULL;
static uint64_t rnd(uint64_t n) { /* xorshift64*: the test's own draws */
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (g_rng * 2685821657736338717ULL) % n;
}

/* ---- comparing two corpora -------------------------------------------------------------- */

#define SAME_ARRAY(a, b, count, what)                                                          \
    CHECK(memcmp((a), (b), (size_t)(count) * sizeof *(a)) == 0, "%s: %s differs", tag, what)

static void check_same(const corpus_t *x, const corpus_t *y, const char *tag) {
    CHECK(x->n_users == y->n_users && x->n_items == y->n_items, "%s: n_users/n_items", tag);
    CHECK(x->n_seq_users == y->n_seq_users && x->n_single_users == y->n_single_users &&
          x->n_duplicate_rows == y->n_duplicate_rows && x->max_train_clicked == y->max_train_clicked,
          "%s: the loader's facts differ", tag);
    if (x->n_users != y->n_users) return;
    int64_t total = 0;
    for (int p = 0; p < N_PHASES; p++) {
        const corpus_phase_t *a = &x->phase[p], *b = &y->phase[p];
        CHECK(a->n_rows == b->n_rows && a->n_neg == b->n_neg && a->has_neg == b->has_neg &&
              a->n_inst == b->n_inst, "%s: %s counts differ", tag, corpus_phase_names[p]);
        if (a->n_rows != b->n_rows || a->n_neg != b->n_neg || a->n_inst != b->n_inst) return;
        SAME_ARRAY(a->user, b->user, a->n_rows, "user");
        SAME_ARRAY(a->item, b->item, a->n_rows, "item");
        SAME_ARRAY(a->time, b->time, a->n_rows, "time");
        SAME_ARRAY(a->position, b->position, a->n_rows, "position");
        SAME_ARRAY(a->neg, b->neg, a->n_rows * a->n_neg, "neg");
        SAME_ARRAY(a->inst_row, b->inst_row, a->n_inst, "inst_row");
        total += a->n_rows;
    }
    int64_t U1 = (int64_t)x->n_users + 1;
    SAME_ARRAY(x->seq_off, y->seq_off, U1, "seq_off");
    SAME_ARRAY(x->seq_item, y->seq_item, total, "seq_item");
    SAME_ARRAY(x->train_off, y->train_off, U1, "train_off");
    SAME_ARRAY(x->all_off, y->all_off, U1, "all_off");
    if (memcmp(x->train_off, y->train_off, (size_t)U1 * 8) || memcmp(x->all_off, y->all_off, (size_t)U1 * 8))
        return;
    SAME_ARRAY(x->train_items, y->train_items, x->train_off[x->n_users], "train_items");
    SAME_ARRAY(x->all_items, y->all_items, x->all_off[x->n_users], "all_items");
}

/* ---- random datasets --------------------------------------------------------------------- */

typedef struct {
    int with_neg[N_PHASES]; /* the file has a neg_items column */
    int bom_crlf;           /* UTF-8 BOM on each header, CRLF line ends */
    int n_users, n_items, rows;
} shape_t;

/* dir/{train,dev,test}.csv: times drawn from a small range (ties), some rows repeated, columns
 * in a random order with an extra one. */
static void write_random(const char *dir, const shape_t *s) {
    const char *eol = s->bom_crlf ? "\r\n" : "\n";
    for (int p = 0; p < N_PHASES; p++) {
        int rows = p == PHASE_TRAIN ? s->rows : s->rows / 4 + 1;
        int n_neg = s->with_neg[p] ? 1 + (int)rnd(5) : 0;
        size_t cap = (size_t)rows * 128 + 256, len = 0;
        char *text = malloc(cap);
        int swap = (int)rnd(2); /* item_id before user_id */
        len += (size_t)sprintf(text + len, "%s%s\ttime\textra%s%s", s->bom_crlf ? "\xEF\xBB\xBF" : "",
                               swap ? "item_id\tuser_id" : "user_id\titem_id",
                               n_neg ? "\tneg_items" : "", eol);
        int last_u = 1, last_i = 1, last_t = 0;
        for (int r = 0; r < rows; r++) {
            int u = 1 + (int)rnd((uint64_t)s->n_users), i = 1 + (int)rnd((uint64_t)s->n_items);
            int t = (int)rnd(40);
            if (r && rnd(8) == 0) u = last_u, i = last_i, t = last_t; /* a repeated row */
            last_u = u, last_i = i, last_t = t;
            len += (size_t)sprintf(text + len, "%d\t%d\t%d\tx%d", swap ? i : u, swap ? u : i, t, r);
            for (int k = 0; k < n_neg; k++)
                len += (size_t)sprintf(text + len, "%s%d", k ? ", " : "\t[",
                                       1 + (int)rnd((uint64_t)s->n_items));
            len += (size_t)sprintf(text + len, "%s%s", n_neg ? "]" : "", eol);
        }
        char name[32];
        snprintf(name, sizeof name, "%s.csv", corpus_phase_names[p]);
        du_write(dir, name, text);
        free(text);
    }
}

static int exists(const char *dir, const char *name) {
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

/* Parsed, then through the cache twice (written, then mapped): all equal. */
static void test_random_datasets(void) {
    for (int trial = 0; trial < 12; trial++) {
        const char *tmp = du_tempdir("cache");
        char dir[300];
        snprintf(dir, sizeof dir, "%s", tmp);
        shape_t s = {{1, trial % 3 != 1, trial % 3 != 2}, trial % 4 == 3, 2 + (int)rnd(60),
                     2 + (int)rnd(80), 1 + (int)rnd(2000)};
        if (trial == 0) s = (shape_t){{1, 1, 1}, 0, 2, 2, 1}; /* one user, one item, one row */
        write_random(dir, &s);
        corpus_opts_t po = {.path = dir, .dataset = ""}, co = po;
        co.cache = CORPUS_CACHE_ON;
        corpus_t parsed, written, mapped;
        int rc = corpus_parse(&po, &parsed, err, sizeof err);
        CHECK(rc == 0, "trial %d: parse: %s", trial, err);
        if (rc) continue;
        CHECK(corpus_check(&parsed, parsed.train_off[parsed.n_users], parsed.all_off[parsed.n_users],
                           err, sizeof err) == 0, "trial %d: the parsed corpus fails its own check: %s",
              trial, err);
        CHECK(corpus_load(&co, &written, err, sizeof err) == 0, "trial %d: %s", trial, err);
        CHECK(!written.map && strstr(written.cache_note, "wrote"), "trial %d: %s", trial,
              written.cache_note);
        CHECK(corpus_load(&co, &mapped, err, sizeof err) == 0, "trial %d: %s", trial, err);
        CHECK(mapped.map && strstr(mapped.cache_note, "read"), "trial %d: %s", trial,
              mapped.cache_note);
        char tag[64];
        snprintf(tag, sizeof tag, "trial %d written", trial);
        check_same(&parsed, &written, tag);
        snprintf(tag, sizeof tag, "trial %d mapped", trial);
        check_same(&parsed, &mapped, tag);
        CHECK(!exists(dir, CORPUS_CACHE_FILE ".tmp"), "trial %d: temporary file left", trial);
        corpus_free(&parsed);
        corpus_free(&written);
        corpus_free(&mapped);
        du_rm_rf(dir);
    }
}

/* ---- corruption and staleness ------------------------------------------------------------ */

static unsigned char *read_file(const char *path, size_t *n) {
    return (unsigned char *)du_read_all(path, n);
}

static void write_bytes(const char *path, const unsigned char *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(b, 1, n, f) != n) || fclose(f)) {
        perror(path);
        exit(1);
    }
}

/* Load through the cache: must succeed, say it rebuilt, and equal `want`. */
static void expect_rebuilt(const corpus_opts_t *co, const corpus_t *want, const char *what) {
    corpus_t c;
    int rc = corpus_load(co, &c, err, sizeof err);
    CHECK(rc == 0, "%s: %s", what, err);
    if (rc) return;
    CHECK(strstr(c.cache_note, "wrote") && strstr(c.cache_note, "rebuilt"), "%s: note \"%s\"",
          what, c.cache_note);
    check_same(want, &c, what);
    corpus_free(&c);
}

static void test_corruption(void) {
    char dir[300], cache[400];
    snprintf(dir, sizeof dir, "%s", du_tempdir("cache"));
    snprintf(cache, sizeof cache, "%s/%s", dir, CORPUS_CACHE_FILE);
    shape_t s = {{1, 1, 0}, 1, 30, 50, 3000};
    write_random(dir, &s);
    corpus_opts_t co = {.path = dir, .dataset = "", .cache = CORPUS_CACHE_ON};
    corpus_t want, c;
    CHECK(corpus_parse(&co, &want, err, sizeof err) == 0, "%s", err);
    CHECK(corpus_load(&co, &c, err, sizeof err) == 0, "%s", err);
    corpus_free(&c);
    size_t n = 0;
    unsigned char *good = read_file(cache, &n);
    CHECK(good && n > 1000, "cache of %zu bytes", n);
    if (!good) return;
    corpus_source_t src;
    CHECK(corpus_source_read(&co, &src, err, sizeof err) == 0, "%s", err);
    /* Truncated at assorted lengths, the header's included. */
    size_t cuts[] = {0, 7, 31, 100, 700, n / 2, n - 64, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        write_bytes(cache, good, cuts[i]);
        CHECK(corpus_cache_map(cache, &src, 1, &c, err, sizeof err) != 0, "truncated to %zu: "
              "accepted", cuts[i]);
        expect_rebuilt(&co, &want, "truncated cache");
    }
    /* One bit flipped: every header byte, then random ones; refused with the checksum, and
     * without it either refused or (padding, facts that agree) consistent. */
    unsigned char *bad = malloc(n);
    for (int t = 0; t < 700 + 40; t++) {
        size_t at = t < 700 ? (size_t)t : (size_t)rnd(n);
        memcpy(bad, good, n);
        bad[at] ^= (unsigned char)(1u << rnd(8));
        write_bytes(cache, bad, n);
        CHECK(corpus_cache_map(cache, &src, 1, &c, err, sizeof err) != 0, "bit flip at %zu: "
              "accepted", at);
        if (corpus_cache_map(cache, NULL, 0, &c, err, sizeof err) == 0) {
            CHECK(corpus_check(&c, c.train_off[c.n_users], c.all_off[c.n_users], err, sizeof err) == 0,
                  "flip at %zu: accepted unchecked", at);
            corpus_free(&c);
        }
        if (t % 300 == 0) expect_rebuilt(&co, &want, "bit-flipped cache");
    }
    free(bad);
    free(good);
    corpus_free(&want);
    du_rm_rf(dir);
}

/* A cache of another dataset, of another separator, or of CSVs since changed. */
static void test_foreign_and_stale(void) {
    char dir[300], other[300], cache[400], path[400];
    snprintf(dir, sizeof dir, "%s", du_tempdir("cache"));
    snprintf(other, sizeof other, "%s", du_tempdir("cache"));
    snprintf(cache, sizeof cache, "%s/%s", dir, CORPUS_CACHE_FILE);
    shape_t s = {{1, 1, 1}, 0, 20, 30, 500};
    write_random(dir, &s);
    write_random(other, &s);
    corpus_opts_t co = {.path = dir, .dataset = "", .cache = CORPUS_CACHE_ON};
    corpus_opts_t oo = {.path = other, .dataset = "", .cache = CORPUS_CACHE_ON};
    corpus_t want, c;
    CHECK(corpus_parse(&co, &want, err, sizeof err) == 0, "%s", err);
    CHECK(corpus_load(&oo, &c, err, sizeof err) == 0, "%s", err);
    corpus_free(&c);
    /* The other dataset's cache copied in. */
    size_t n = 0;
    snprintf(path, sizeof path, "%s/%s", other, CORPUS_CACHE_FILE);
    unsigned char *b = read_file(path, &n);
    write_bytes(cache, b, n);
    free(b);
    expect_rebuilt(&co, &want, "another dataset's cache");
    /* Built with another separator (the fingerprint records it). */
    corpus_opts_t comma = co;
    comma.sep = ',';
    corpus_source_t src;
    CHECK(corpus_source_read(&comma, &src, err, sizeof err) == 0, "%s", err);
    CHECK(corpus_cache_map(cache, &src, 1, &c, err, sizeof err) != 0 && strstr(err, "separator"),
          "separator ',': %s", err);
    /* --regenerate 1 rebuilds a valid one. */
    corpus_opts_t re = co;
    re.cache = CORPUS_CACHE_REBUILD;
    CHECK(corpus_load(&re, &c, err, sizeof err) == 0 && strstr(c.cache_note, "--regenerate"),
          "regenerate: %s", c.cache_note);
    corpus_free(&c);
    /* A CSV appended to (size and tail change) and one touched (mtime only). */
    s.rows = 700;
    write_random(dir, &s);
    corpus_free(&want);
    CHECK(corpus_parse(&co, &want, err, sizeof err) == 0, "%s", err);
    expect_rebuilt(&co, &want, "changed CSVs");
    snprintf(path, sizeof path, "%s/dev.csv", dir);
    struct timespec times[2] = {{0, UTIME_NOW}, {12345, 0}};
    CHECK(utimensat(AT_FDCWD, path, times, 0) == 0, "touch");
    expect_rebuilt(&co, &want, "touched CSV");
    /* The cache disabled: parsed, nothing said. */
    corpus_opts_t off = co;
    off.cache = CORPUS_CACHE_OFF;
    CHECK(corpus_load(&off, &c, err, sizeof err) == 0 && !c.map && !c.cache_note[0], "off");
    corpus_free(&c);
    corpus_free(&want);
    du_rm_rf(dir);
    du_rm_rf(other);
}

/* A folder without write permission: parsed, no file written, one line saying why. */
static void test_read_only(void) {
    char dir[300];
    snprintf(dir, sizeof dir, "%s", du_tempdir("cache"));
    shape_t s = {{1, 1, 1}, 0, 10, 10, 100};
    write_random(dir, &s);
    chmod(dir, 0555);
    corpus_opts_t co = {.path = dir, .dataset = "", .cache = CORPUS_CACHE_ON};
    corpus_t c;
    CHECK(corpus_load(&co, &c, err, sizeof err) == 0, "%s", err);
    CHECK(!c.map && strstr(c.cache_note, "read-only"), "note \"%s\"", c.cache_note);
    CHECK(!exists(dir, CORPUS_CACHE_FILE) && !exists(dir, CORPUS_CACHE_LOCK), "wrote into a "
          "read-only folder");
    corpus_free(&c);
    chmod(dir, 0755);
    du_rm_rf(dir);
}

/* corpus_check catches a corpus whose index disagrees with itself (what a cache that passed
 * its checksum but came from a faulty writer would hold). */
static void test_check_detects(void) {
    char dir[300];
    snprintf(dir, sizeof dir, "%s", du_tempdir("cache"));
    shape_t s = {{1, 1, 1}, 0, 20, 50, 800};
    write_random(dir, &s);
    corpus_opts_t co = {.path = dir, .dataset = ""};
    corpus_t c;
    CHECK(corpus_parse(&co, &c, err, sizeof err) == 0, "%s", err);
    int64_t nt = c.train_off[c.n_users], na = c.all_off[c.n_users];
    /* Two slots of one user with different items swapped. */
    int32_t u = 1;
    while (u < c.n_users && c.seq_off[u + 1] - c.seq_off[u] < 2) u++;
    int64_t a = c.seq_off[u], b = a + 1;
    while (b < c.seq_off[u + 1] && c.seq_item[b] == c.seq_item[a]) b++;
    CHECK(b < c.seq_off[u + 1], "no user with two different items");
    if (b < c.seq_off[u + 1]) {
        int32_t t = c.seq_item[a];
        c.seq_item[a] = c.seq_item[b];
        c.seq_item[b] = t;
        CHECK(corpus_check(&c, nt, na, err, sizeof err) != 0, "swapped sequence slots accepted");
        c.seq_item[b] = c.seq_item[a];
        c.seq_item[a] = t;
    }
    CHECK(corpus_check(&c, nt, na, err, sizeof err) == 0, "restored: %s", err);
    int32_t keep = c.phase[0].position[0];
    c.phase[0].position[0] = (int32_t)(c.seq_off[c.phase[0].user[0] + 1] - c.seq_off[c.phase[0].user[0]]);
    CHECK(corpus_check(&c, nt, na, err, sizeof err) != 0 && strstr(err, "past"), "position past "
          "the sequence: %s", err);
    c.phase[0].position[0] = keep;
    c.phase[1].neg[0] = c.n_items;
    CHECK(corpus_check(&c, nt, na, err, sizeof err) != 0 && strstr(err, "dev neg"), "negative "
          "past the catalog: %s", err);
    c.phase[1].neg[0] = 1;
    u = 1;
    while (u < c.n_users && c.all_off[u + 1] - c.all_off[u] < 2) u++;
    CHECK(u < c.n_users, "no user with two clicked items");
    if (u < c.n_users) {
        c.all_items[c.all_off[u] + 1] = c.all_items[c.all_off[u]]; /* a repeat */
        CHECK(corpus_check(&c, nt, na, err, sizeof err) != 0 && strstr(err, "clicked set"),
              "a repeated clicked item accepted: %s", err);
    }
    corpus_free(&c);
    du_rm_rf(dir);
}

/* ---- concurrency ------------------------------------------------------------------------- */

static uint64_t corpus_digest(const corpus_t *c) {
    uint64_t h = 1469598103934665603ULL;
#define MIX(p, count)                                                        \
    for (size_t i_ = 0; i_ < (size_t)(count) * sizeof *(p); i_++)           \
        h = (h ^ ((const unsigned char *)(p))[i_]) * 1099511628211ULL;
    int64_t total = 0;
    for (int p = 0; p < N_PHASES; p++) {
        const corpus_phase_t *ph = &c->phase[p];
        MIX(ph->user, ph->n_rows) MIX(ph->item, ph->n_rows) MIX(ph->time, ph->n_rows)
        MIX(ph->position, ph->n_rows) MIX(ph->neg, ph->n_rows * ph->n_neg)
        MIX(ph->inst_row, ph->n_inst)
        total += ph->n_rows;
    }
    MIX(c->seq_off, c->n_users + 1) MIX(c->seq_item, total)
    MIX(c->train_items, c->train_off[c->n_users]) MIX(c->all_items, c->all_off[c->n_users])
#undef MIX
    return h;
}

/* `test_corpus_cache --load DIR` (a child of test_concurrent): load DIR through the cache and
 * print the corpus' digest and whether this process wrote (1) or read (0) the cache. */
static int child_load(const char *dir) {
    corpus_opts_t co = {.path = dir, .dataset = "", .cache = CORPUS_CACHE_ON};
    corpus_t c;
    if (corpus_load(&co, &c, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int wrote = strstr(c.cache_note, "wrote") != NULL, read = strstr(c.cache_note, "read") != NULL;
    printf("%llu %d\n", (unsigned long long)corpus_digest(&c), wrote ? 1 : read ? 0 : 2);
    corpus_free(&c);
    return 0;
}

/* N processes (exec'd afresh: no OpenMP state crosses a fork) load one clean folder at once:
 * one writes, all agree with the parse. */
static void test_concurrent(void) {
    enum { N = 6 };
    char dir[300];
    snprintf(dir, sizeof dir, "%s", du_tempdir("cache"));
    shape_t s = {{1, 1, 1}, 0, 300, 400, 60000};
    write_random(dir, &s);
    corpus_opts_t co = {.path = dir, .dataset = "", .cache = CORPUS_CACHE_OFF};
    corpus_t want;
    CHECK(corpus_parse(&co, &want, err, sizeof err) == 0, "%s", err);
    unsigned long long want_digest = corpus_digest(&want);
    corpus_free(&want);
    FILE *out[N];
    for (int k = 0; k < N; k++) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "/proc/%d/exe --load '%s'", (int)getpid(), dir);
        out[k] = popen(cmd, "r");
        CHECK(out[k] != NULL, "popen");
    }
    int writers = 0;
    for (int k = 0; k < N; k++) {
        if (!out[k]) continue;
        unsigned long long digest = 0;
        int kind = 2;
        int got = fscanf(out[k], "%llu %d", &digest, &kind);
        int status = pclose(out[k]);
        CHECK(got == 2 && status == 0, "process %d failed (status %d)", k, status);
        CHECK(digest == want_digest, "process %d: its corpus differs from the parse", k);
        CHECK(kind != 2, "process %d: neither read nor wrote the cache", k);
        writers += kind == 1;
    }
    CHECK(writers == 1, "%d processes wrote the cache (expected one)", writers);
    CHECK(!exists(dir, CORPUS_CACHE_FILE ".tmp"), "temporary file left");
    du_rm_rf(dir);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--load") == 0) return child_load(argv[2]);
    test_random_datasets();
    test_corruption();
    test_foreign_and_stale();
    test_read_only();
    test_check_detects();
    test_concurrent();
    return tu_finish("test_corpus_cache");
}
