/* A random tiny dataset on disk, loaded as a corpus: n_users users with seq_len interactions
 * each over items 1..n_items-1 (random, never the same item twice in a row), the last one in
 * test.csv, the one before in dev.csv (n_neg random negatives each), the rest in train.csv.
 * For tests that need a corpus to train on (trainer, state, memory estimate). */
#ifndef TIMIREC_TEST_TINY_CORPUS_H
#define TIMIREC_TEST_TINY_CORPUS_H

#include <stdio.h>
#include <stdlib.h>

#include "data_util.h"
#include "timirec/corpus.h"

static inline uint64_t tc_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Writes <dir>/tiny/{train,dev,test}.csv and loads them into c. Exits on failure. */
static inline void tc_make_corpus(const char *dir, int n_users, int n_items, int seq_len, int n_neg,
                                  uint64_t seed, corpus_t *c) {
    char path[512];
    snprintf(path, sizeof path, "%s/tiny", dir);
    mkdir(path, 0777);
    FILE *f[3];
    const char *names[3] = {"train", "dev", "test"};
    for (int p = 0; p < 3; p++) {
        snprintf(path, sizeof path, "%s/tiny/%s.csv", dir, names[p]);
        f[p] = fopen(path, "w");
        if (!f[p]) {
            perror(path);
            exit(1);
        }
        fprintf(f[p], p ? "user_id\titem_id\ttime\tneg_items\n" : "user_id\titem_id\ttime\n");
    }
    uint64_t s = seed;
    long time = 1;
    for (int u = 1; u <= n_users; u++) {
        int prev = 0;
        for (int i = 0; i < seq_len; i++) {
            int item;
            do item = 1 + (int)(tc_next(&s) % (uint64_t)(n_items - 1));
            while (item == prev);
            prev = item;
            int p = i == seq_len - 1 ? 2 : i == seq_len - 2 ? 1 : 0;
            fprintf(f[p], "%d\t%d\t%ld", u, item, time++);
            if (p) {
                fputs("\t[", f[p]);
                for (int j = 0; j < n_neg; j++)
                    fprintf(f[p], j ? ", %d" : "%d", 1 + (int)(tc_next(&s) % (uint64_t)(n_items - 1)));
                fputc(']', f[p]);
            }
            fputc('\n', f[p]);
        }
    }
    for (int p = 0; p < 3; p++) fclose(f[p]);
    char err[1024];
    corpus_opts_t co = {.path = dir, .dataset = "tiny", .sep = '\t'};
    if (corpus_load(&co, c, err, sizeof err)) {
        fprintf(stderr, "tiny corpus: %s\n", err);
        exit(1);
    }
}

#endif
