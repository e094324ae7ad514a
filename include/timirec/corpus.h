/* The dataset in memory (docs/MODEL.md, "The corpus"): the three files, every user's sequence, each
 * row's position in it, the instances (rows with position > 0) and the clicked sets.
 *
 * Format: <path>/<dataset>/{train,dev,test}.csv, separator (default tab), one header line
 * naming the columns (user_id, item_id, time required, in any order; neg_items optional, a
 * list "[12, 7, 3051]" with the same count on every row of a file; other columns ignored).
 * Ids are positive integers; 0 is padding. n_users = 1 + max user id, n_items = 1 + max item
 * id over all three files, as the reference computes them. */
#ifndef TIMIREC_CORPUS_H
#define TIMIREC_CORPUS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { PHASE_TRAIN = 0, PHASE_DEV = 1, PHASE_TEST = 2, N_PHASES = 3 };
extern const char *const corpus_phase_names[N_PHASES]; /* "train", "dev", "test" */

typedef struct {
    int64_t n_rows;      /* data rows of the file */
    int32_t *user;       /* (n_rows) */
    int32_t *item;       /* (n_rows) */
    int64_t *time;       /* (n_rows) */
    int32_t *position;   /* (n_rows) index of the row in its user's sequence */
    int32_t n_neg;       /* negatives per row; 0 when the file has no neg_items column */
    int has_neg;         /* the file has a neg_items column */
    int32_t *neg;        /* (n_rows, n_neg) */
    int64_t n_inst;      /* rows with position > 0 */
    int64_t *inst_row;   /* (n_inst) row of each instance, in file order */
} corpus_phase_t;

typedef struct {
    int32_t n_users;            /* 1 + max user id */
    int32_t n_items;            /* 1 + max item id */
    corpus_phase_t phase[N_PHASES];
    /* Sequences: train, dev, test concatenated and sorted stably by (time, user_id). */
    int64_t *seq_off;           /* (n_users + 1) user u's items are seq_item[seq_off[u] .. seq_off[u+1]) */
    int32_t *seq_item;          /* (total rows) */
    /* Clicked sets, sorted and unique per user (CSR like the sequences). */
    int64_t *train_off;         /* (n_users + 1) */
    int32_t *train_items;       /* items of the user's train rows */
    int64_t *all_off;           /* (n_users + 1) */
    int32_t *all_items;         /* items of the user's train, dev and test rows */
    /* Facts the loader noticed (logged, not errors). */
    int64_t n_seq_users;        /* users with at least one row */
    int64_t n_single_users;     /* users with exactly one row: no instance anywhere */
    int64_t n_duplicate_rows;   /* repeated (user_id, item_id, time) rows */
    int32_t max_train_clicked;  /* largest train clicked set */
    /* Where it came from (corpus_cache.h). When map is set every array above points into that
     * read-only mapping of the cache file, and corpus_free unmaps instead of freeing. */
    void *map;
    size_t map_bytes;
    char cache_note[512];       /* one line on the cache: read, written, or why none; "" when off */
} corpus_t;

/* The binary cache beside the CSVs (corpus_cache.h). Off by default: the library parses;
 * the command line turns it on (--cache 1, the default there) or forces a rebuild
 * (--regenerate 1). */
enum { CORPUS_CACHE_OFF = 0, CORPUS_CACHE_ON = 1, CORPUS_CACHE_REBUILD = 2 };

typedef struct {
    const char *path;     /* folder holding the dataset folder, e.g. "../data/" */
    const char *dataset;  /* dataset folder name */
    char sep;             /* column separator, default '\t' */
    int cache;            /* CORPUS_CACHE_* */
} corpus_opts_t;

/* Read and index a dataset: from the cache when opts->cache asks for it and a valid one
 * exists, else by parsing the CSVs (corpus_parse). Returns 0, or -1 with a message in err,
 * "path:LINE: problem" (text.h), naming the file, the line and what is wrong (the corpus is
 * then empty and needs no free). */
int corpus_load(const corpus_opts_t *opts, corpus_t *c, char *err, size_t errlen);
/* The same from the CSVs alone, whatever opts->cache says. */
int corpus_parse(const corpus_opts_t *opts, corpus_t *c, char *err, size_t errlen);
void corpus_free(corpus_t *c);

/* <path>/<dataset>/<name> as corpus_load composes it (name "" gives the folder). */
void corpus_file_path(const corpus_opts_t *opts, const char *name, char *out, size_t n);

/* History of a row: the last `history_max` items (all when history_max <= 0) of its user's
 * sequence before its position, oldest first. Returns the length; *items points into
 * seq_item. */
static inline int32_t corpus_history(const corpus_t *c, int32_t user, int32_t position,
                                     int history_max, const int32_t **items) {
    int32_t start = 0;
    if (history_max > 0 && position > history_max) start = position - history_max;
    *items = c->seq_item + c->seq_off[user] + start;
    return position - start;
}

/* Whether `item` is in the sorted list [list, list + n). */
int corpus_sorted_contains(const int32_t *list, int64_t n, int32_t item);

#ifdef __cplusplus
}
#endif
#endif
