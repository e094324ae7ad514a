/* Test helpers for datasets: temp folders, writing files, and an independent brute-force model
 * of docs/MODEL.md "The corpus" (global stable sort on (time, user_id) over train ++ dev ++ test)
 * that the corpus and sampler are checked against. */
#ifndef TIMIREC_TEST_DATA_UTIL_H
#define TIMIREC_TEST_DATA_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "timirec/corpus.h"
#include "timirec/prepare.h"

/* A synthetic dataset (synth: users x items, seq_len interactions each, clusters capped to fit
 * the catalog) written as dir/name/{train,dev,test}.csv with n_neg negatives per dev/test row,
 * then loaded into c. Exits with a FAIL line on any error. */
static inline void du_synth_corpus(const char *dir, const char *name, int64_t users, int64_t items,
                                   int64_t seq_len, int n_neg, uint64_t seed, corpus_t *c) {
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    synth_opts_t so;
    synth_defaults(&so);
    so.n_users = users;
    so.n_items = items;
    so.seq_len = seq_len;
    so.seed = (int64_t)seed;
    if (so.n_clusters > items / 2) so.n_clusters = items / 2;
    if (so.interests > so.n_clusters) so.interests = so.n_clusters;
    interactions_t x;
    if (synth_generate(&so, &x, err, sizeof err) || prepare_write(&x, path, n_neg, seed, err, sizeof err)) {
        printf("FAIL: synthetic corpus %s: %s\n", name, err);
        exit(1);
    }
    interactions_free(&x);
    corpus_opts_t co = {.path = dir, .dataset = name, .sep = '\t'};
    if (corpus_load(&co, c, err, sizeof err)) {
        printf("FAIL: %s\n", err);
        exit(1);
    }
}

/* mkdtemp under /tmp; returns a static path valid until the next call. */
static inline const char *du_tempdir(const char *tag) {
    static char path[256];
    snprintf(path, sizeof path, "/tmp/timirec_%s_XXXXXX", tag);
    if (!mkdtemp(path)) {
        perror("mkdtemp");
        exit(1);
    }
    return path;
}

static inline void du_write_path(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

static inline void du_write(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    du_write_path(path, text);
}

/* Whole file, NUL-terminated (NULL when it cannot be opened); *len gets its size. */
static inline char *du_read_all(const char *path, size_t *len) {
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *b = malloc(cap);
    while ((got = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n < 2) b = realloc(b, cap *= 2);
    }
    fclose(f);
    b[n] = '\0';
    if (len) *len = n;
    return b;
}

static inline void du_rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
}

/* Brute-force positions and histories. */
typedef struct {
    int64_t time;
    int32_t user;
    int64_t g;
} du_key_t;

static int du_cmp_key(const void *a, const void *b) {
    const du_key_t *x = a, *y = b;
    if (x->time != y->time) return x->time < y->time ? -1 : 1;
    if (x->user != y->user) return x->user < y->user ? -1 : 1;
    return (x->g > y->g) - (x->g < y->g);
}

typedef struct {
    int64_t total;
    int64_t *order;      /* (total) global rows in sorted order */
    int64_t *rank_of;    /* (total) index in `order` of each global row */
    int32_t *item_of;    /* (total) item of each global row */
    int32_t *user_of;    /* (total) */
    int64_t base[N_PHASES];
} du_brute_t;

static inline void du_brute_build(const corpus_t *c, du_brute_t *bf) {
    int64_t total = 0;
    for (int p = 0; p < N_PHASES; p++) {
        bf->base[p] = total;
        total += c->phase[p].n_rows;
    }
    bf->total = total;
    du_key_t *keys = malloc((size_t)total * sizeof *keys);
    bf->order = malloc((size_t)total * sizeof *bf->order);
    bf->rank_of = malloc((size_t)total * sizeof *bf->rank_of);
    bf->item_of = malloc((size_t)total * sizeof *bf->item_of);
    bf->user_of = malloc((size_t)total * sizeof *bf->user_of);
    for (int p = 0; p < N_PHASES; p++)
        for (int64_t r = 0; r < c->phase[p].n_rows; r++) {
            int64_t g = bf->base[p] + r;
            keys[g] = (du_key_t){c->phase[p].time[r], c->phase[p].user[r], g};
            bf->item_of[g] = c->phase[p].item[r];
            bf->user_of[g] = c->phase[p].user[r];
        }
    qsort(keys, (size_t)total, sizeof *keys, du_cmp_key);
    for (int64_t k = 0; k < total; k++) {
        bf->order[k] = keys[k].g;
        bf->rank_of[keys[k].g] = k;
    }
    free(keys);
}

static inline void du_brute_free(du_brute_t *bf) {
    free(bf->order);
    free(bf->rank_of);
    free(bf->item_of);
    free(bf->user_of);
}

/* Position of global row g: earlier rows of the same user in sorted order (O(total)). */
static inline int32_t du_brute_position(const du_brute_t *bf, int64_t g) {
    int32_t pos = 0;
    for (int64_t k = 0; k < bf->rank_of[g]; k++) pos += bf->user_of[bf->order[k]] == bf->user_of[g];
    return pos;
}

/* History of global row g (last history_max items, oldest first) into out; returns length. */
static inline int32_t du_brute_history(const du_brute_t *bf, int64_t g, int history_max,
                                       int32_t *out) {
    int32_t n = 0;
    for (int64_t k = 0; k < bf->rank_of[g]; k++)
        if (bf->user_of[bf->order[k]] == bf->user_of[g]) out[n++] = bf->item_of[bf->order[k]];
    if (history_max > 0 && n > history_max) {
        memmove(out, out + (n - history_max), (size_t)history_max * sizeof *out);
        n = history_max;
    }
    return n;
}

#endif
