/* Dataset tools: raw interactions -> the dataset format, and the synthetic generator.
 *
 * The recipe (../shared/data/README.md, the reference framework's MovieLens notebook):
 * drop duplicate (user, item, time) rows keeping the first; sort stably by (time, user);
 * renumber users and items from 1 in ascending order of their original ids; per user the
 * first interaction stays in train, the last goes to test and the one before it to dev
 * (a user with 2 interactions has no dev row, one with 1 only a train row); each dev/test
 * row gets `n_neg` negatives drawn uniformly from 1..n_items, redrawn while the user ever
 * interacted with the item (Philox, RNG_PREPARE_NEG; test drawn as epoch 0, dev as 1).
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

/* Apply the recipe to `x` and write the three files into outdir (created if missing).
 * Returns 0, or -1 with a message. */
int prepare_write(const interactions_t *x, const char *outdir, int n_neg, uint64_t seed,
                  char *err, size_t errlen);

/* Subcommands: argv[0] is the subcommand name. Return the process exit code. */
int prepare_main(int argc, char **argv);
int synth_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
