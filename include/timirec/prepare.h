/* Dataset tools: raw interactions -> the dataset format, and the synthetic generator.
 *
 * The recipe (the reference framework's MovieLens preparation notebook, ReChorus data/):
 * drop duplicate (user, item, time) rows keeping the first; sort stably by (time, user);
 * renumber users and items from 1 in ascending order of their original ids; per user the
 * first interaction stays in train, the last goes to test and the one before it to dev
 * (a user with 2 interactions has no dev row, one with 1 only a train row); each dev/test
 * row gets `n_neg` negatives drawn uniformly from 1..n_items, redrawn while the user ever
 * interacted with the item (Philox, RNG_PREPARE_NEG; test drawn as epoch 0, dev as 1);
 * n_neg 0 writes no neg_items column (for full-catalog evaluation, --test_all 1).
 * Outputs train.csv, dev.csv, test.csv (tab-separated, header, rows in sorted order). */
#ifndef TIMIREC_PREPARE_H
#define TIMIREC_PREPARE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Raw interactions with original ids (any positive 64-bit values). */
typedef struct {
    int64_t n;
    int64_t *user;  /* (n) */
    int64_t *item;  /* (n) */
    int64_t *time;  /* (n) */
} interactions_t;

void interactions_free(interactions_t *x);

/* Read a raw log. format is one of
 *   "udata"     MovieLens 100K u.data: `user item rating time`, tab/space separated, no header;
 *   "movielens" MovieLens 1M/10M ratings.dat: `user::item::rating::time`;
 *   "csv"       a header naming user_id, item_id and time (any order, other columns ignored),
 *               tab-separated if the header has a tab, else comma-separated;
 *   "seq"       one line per user, `user item item ...` (space separated), items in time
 *               order; time = the interaction's 0-based index in the whole file.
 * Blank lines are skipped. Returns 0, or -1 with a message "path:LINE: problem" (text.h;
 * "path: problem" when no line applies, as for a file that cannot be opened); x is then left
 * empty. */
int interactions_read(const char *path, const char *format, interactions_t *x, char *err,
                      size_t errlen);

/* What prepare_write did (for the summary line and tests). */
typedef struct {
    int64_t n_users, n_items;      /* distinct, after dropping duplicates */
    int64_t n_rows;                /* interactions kept */
    int64_t n_duplicates;          /* (user, item, time) rows dropped */
    int64_t n_train, n_dev, n_test;
} prepare_stats_t;

/* Apply the recipe to `x` and write the three files into outdir (created if missing).
 * Returns 0, or -1 with a message. */
int prepare_write(const interactions_t *x, const char *outdir, int n_neg, uint64_t seed,
                  char *err, size_t errlen);

/* The same, also filling *stats when non-NULL. */
int prepare_write_stats(const interactions_t *x, const char *outdir, int n_neg, uint64_t seed,
                        prepare_stats_t *stats, char *err, size_t errlen);

/* Row text shared with the streaming synth writer, so both write the same bytes.
 * prepare_eval_header: the dev/test header line (a neg_items column only when n_neg > 0).
 * prepare_put_row: "user\titem\ttime" (1-based ids), no newline; returns the end.
 * prepare_put_negatives: "\t[v, ...]" with n_neg items (1-based) drawn uniformly from
 * 1..n_items and redrawn while set in bits (the user's items, 0-based; `distinct` of them),
 * row k of the file, Philox RNG_PREPARE_NEG epoch; nothing when n_neg is 0. *fail is set
 * when the user holds (nearly) every item and the list could not be filled. */
const char *prepare_eval_header(int n_neg);
char *prepare_put_row(char *p, uint32_t user, uint32_t item, int64_t time);
char *prepare_put_negatives(char *p, const uint64_t *bits, int64_t distinct, int64_t n_items,
                            int n_neg, uint64_t seed, uint32_t epoch, int64_t k, int *fail);

/* The synthetic generator (timirec synth). Items 0..n_items-1 (original id = index + 1) are
 * dealt into clusters: item i belongs to cluster i % n_clusters and is the (i / n_clusters)-th
 * most popular of it (popularity ~ rank^-pop_skew, Zipf-like; about 1 gives a real log's
 * long tail). Each user owns `interests` distinct clusters with random weights and walks
 * through them: at every step it keeps its current interest with probability `stay`, else
 * re-picks one by weight; the item comes from that interest's cluster, or with probability
 * `noise` uniformly from all items. Lengths are
 * min_len + an exponential share of the rest, summing exactly to n_interactions (default
 * n_users * seq_len). User u's j-th interaction happens at time (start_u + j) * n_users + u
 * (a global step counter: users interleave). Randomness: Philox RNG_SYNTH, epoch 0 index =
 * user (set-up), epoch 1 index = global interaction number, so threads cannot change it. */
typedef struct {
    int64_t n_users, n_items, n_interactions; /* n_interactions 0: n_users * seq_len */
    int64_t n_clusters, interests, seq_len, min_len;
    double stay, noise, pop_skew;
    int64_t seed;
} synth_opts_t;

void synth_defaults(synth_opts_t *o);

/* Generate the raw interactions (original ids from 1). Returns 0, or -1 with a message. */
int synth_generate(const synth_opts_t *o, interactions_t *x, char *err, size_t errlen);

/* The files prepare_write would make of synth_generate's output (the same bytes, n_neg
 * negatives per dev/test row, seeded by o->seed; 0: no neg_items column) plus
 * item_clusters.csv, written streaming: memory O(n_users * interests + n_items + the longest
 * user's rows), never the interactions. *st (when non-NULL) as prepare fills it. Returns 0,
 * or -1 with a message. */
int synth_write(const synth_opts_t *o, const char *dir, int n_neg, prepare_stats_t *st, char *err,
                size_t errlen);

/* Subcommands: argv[0] is the subcommand name. Return the process exit code. */
int prepare_main(int argc, char **argv);
int synth_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
