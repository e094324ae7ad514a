/* Fuzz targets (targets.h): one input in, the reader run, everything it allocated freed. */
#include "targets.h"

#include "timirec/checkpoint.h"
#include "timirec/corpus.h"
#include "timirec/corpus_cache.h"
#include "timirec/options.h"
#include "timirec/run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One private folder per process for the files the readers take (they read paths, not
 * buffers); removed at exit. */
static char g_dir[256];
/* Where the targets leave a sum of what they read, so the reads are not optimised away. */
volatile double fuzz_sink;

static void remove_dir(void) {
    static const char *const names[] = {"d/train.csv", "d/dev.csv", "d/test.csv", "c.ini",
                                        "m.safetensors", "cache.bin"};
    char path[512];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", g_dir, names[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/d", g_dir);
    rmdir(path);
    rmdir(g_dir);
}

static const char *work_dir(void) {
    if (!g_dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(g_dir, sizeof g_dir, "%s/timirec_fuzz_XXXXXX", tmp && *tmp ? tmp : "/tmp");
        char sub[300];
        snprintf(sub, sizeof sub, "%s/d", g_dir);
        if (!mkdtemp(g_dir) || (snprintf(sub, sizeof sub, "%s/d", g_dir), mkdir(sub, 0700))) {
            perror("fuzz: temp folder");
            abort();
        }
        atexit(remove_dir);
    }
    return g_dir;
}

static void write_file(const char *name, const uint8_t *data, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", work_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f)) {
        perror(path);
        abort();
    }
}

/* The next part of [*p, end) up to FUZZ_SPLIT (or the end); 0 when nothing is left. */
static int next_part(const uint8_t **p, const uint8_t *end, const uint8_t **s, size_t *n) {
    if (*p > end) return 0;
    size_t sl = strlen(FUZZ_SPLIT);
    const uint8_t *q = *p;
    while (q + sl <= end && memcmp(q, FUZZ_SPLIT, sl) != 0) q++;
    *s = *p;
    if (q + sl <= end) {
        *n = (size_t)(q - *p);
        *p = q + sl;
    } else {
        *n = (size_t)(end - *p);
        *p = end + 1;
    }
    return 1;
}

/* ---- the dataset reader ------------------------------------------------------------------ */

/* Sum of every history (the index the sampler trusts). */
static int64_t touch_histories(const corpus_t *c) {
    int64_t sum = 0;
    for (int ph = 0; ph < N_PHASES; ph++)
        for (int64_t i = 0; i < c->phase[ph].n_inst; i++) {
            int64_t r = c->phase[ph].inst_row[i];
            const int32_t *items;
            int32_t h = corpus_history(c, c->phase[ph].user[r], c->phase[ph].position[r], 5, &items);
            for (int32_t k = 0; k < h; k++) sum += items[k];
        }
    return sum;
}

int fuzz_corpus(const uint8_t *data, size_t n) {
    static const char *const files[N_PHASES] = {"d/train.csv", "d/dev.csv", "d/test.csv"};
    const uint8_t *p = data, *end = data + n, *s = data;
    size_t len = 0;
    for (int ph = 0; ph < N_PHASES; ph++) {
        next_part(&p, end, &s, &len); /* keeps the last part when none is left */
        write_file(files[ph], s, len);
    }
    const uint8_t *nl = memchr(data, '\n', n);
    size_t first = nl ? (size_t)(nl - data) : n;
    char sep = memchr(data, ',', first) && !memchr(data, '\t', first) ? ',' : '\t';
    corpus_opts_t o = {.path = work_dir(), .dataset = "d", .sep = sep};
    corpus_t c;
    char err[1024];
    if (corpus_load(&o, &c, err, sizeof err) == 0) {
        int64_t sum = touch_histories(&c);
        /* Through the cache and back: it must load and index the same histories. */
        char path[512];
        corpus_source_t src = {.sep = (unsigned char)sep};
        corpus_t m;
        snprintf(path, sizeof path, "%s/cache.bin", work_dir());
        if (corpus_check(&c, c.train_off[c.n_users], c.all_off[c.n_users], err, sizeof err) ||
            corpus_cache_write(path, &c, &src, err, sizeof err) ||
            corpus_cache_map(path, &src, 1, &m, err, sizeof err) || touch_histories(&m) != sum) {
            fprintf(stderr, "fuzz: the parsed corpus does not round-trip through the cache: %s\n",
                    err);
            abort();
        }
        fuzz_sink = (double)sum;
        corpus_free(&m);
        corpus_free(&c);
    }
    return 0;
}

/* ---- the dataset cache ------------------------------------------------------------------- */

int fuzz_corpus_cache(const uint8_t *data, size_t n) {
    write_file("cache.bin", data, n);
    char path[512];
    snprintf(path, sizeof path, "%s/cache.bin", work_dir());
    corpus_t c;
    char why[1024];
    /* Without the checksum first: the structural checks are what stand between the bytes and
     * the indexing; then as corpus_load reads it. */
    for (int verify = 0; verify <= 1; verify++) {
        if (corpus_cache_map(path, NULL, verify, &c, why, sizeof why) == 0) {
            int64_t sum = touch_histories(&c);
            for (int32_t u = 0; u < c.n_users; u++)
                for (int64_t k = c.all_off[u]; k < c.all_off[u + 1]; k++) sum += c.all_items[k];
            fuzz_sink = (double)sum;
            corpus_free(&c);
        }
    }
    return 0;
}

/* ---- the command line and config files ---------------------------------------------------- */

#define FUZZ_MAX_ARGS 256

int fuzz_config(const uint8_t *data, size_t n) {
    const uint8_t *p = data, *end = data + n, *words = data, *ini = NULL;
    size_t words_n = 0, ini_n = 0;
    next_part(&p, end, &words, &words_n);
    int have_ini = next_part(&p, end, &ini, &ini_n);
    char *text = malloc(words_n + 1);
    if (!text) abort();
    memcpy(text, words, words_n);
    text[words_n] = '\0';
    char *argv[FUZZ_MAX_ARGS + 3];
    char ini_path[512];
    int argc = 0;
    argv[argc++] = "timirec";
    int skip_next = 0;
    for (char *w = strtok(text, " \t\r\n"); w && argc < FUZZ_MAX_ARGS; w = strtok(NULL, " \t\r\n")) {
        /* --config of the input would read any file of the machine: replaced by ours. */
        if (skip_next) {
            skip_next = 0;
            continue;
        }
        if (strcmp(w, "--config") == 0) {
            skip_next = 1;
            continue;
        }
        if (strncmp(w, "--config=", 9) == 0) continue;
        argv[argc++] = w;
    }
    if (have_ini) {
        write_file("c.ini", ini, ini_n);
        snprintf(ini_path, sizeof ini_path, "%s/c.ini", work_dir());
        argv[argc++] = "--config";
        argv[argc++] = ini_path;
    }
    argv[argc] = NULL;
    run_args_t a;
    char err[1024];
    run_args_parse(&a, argc, argv, err, sizeof err);
    options_free_files();
    free(text);
    return 0;
}

/* ---- the checkpoint loader ---------------------------------------------------------------- */

model_layout_t fuzz_checkpoint_layout(void) {
    model_config_t c = {.stage = STAGE_FINETUNE, .n_items = 12, .emb_size = 4, .attn_size = 3,
                        .K = 2, .history_max = 4, .add_pos = 1, .add_trm = 1, .n_layers = 2,
                        .temp = 1, .dropout = 0.5};
    model_layout_t lay;
    model_layout_build(&c, &lay);
    return lay;
}

int fuzz_checkpoint(const uint8_t *data, size_t n) {
    static model_layout_t lay;
    static int have_lay;
    if (!have_lay) {
        lay = fuzz_checkpoint_layout();
        have_lay = 1;
    }
    write_file("m.safetensors", data, n);
    char path[512], err[1024];
    snprintf(path, sizeof path, "%s/m.safetensors", work_dir());
    float *params = calloc((size_t)lay.total, sizeof *params);
    if (!params) abort();
    int loaded = 0;
    checkpoint_load(path, &lay, params, 1, &loaded, err, sizeof err);
    checkpoint_load(path, &lay, params, 0, &loaded, err, sizeof err);
    /* A loaded value is a float like any other: reading them all must be defined. */
    double sum = 0;
    for (int64_t i = 0; i < lay.total; i++) sum += params[i];
    fuzz_sink = sum;
    free(params);
    return 0;
}

fuzz_target_fn fuzz_target(const char *name) {
    if (strcmp(name, "corpus") == 0) return fuzz_corpus;
    if (strcmp(name, "corpus_cache") == 0) return fuzz_corpus_cache;
    if (strcmp(name, "config") == 0) return fuzz_config;
    if (strcmp(name, "checkpoint") == 0) return fuzz_checkpoint;
    return NULL;
}
