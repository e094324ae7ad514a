/* Training negatives, epoch shuffles and batches (docs/MODEL.md, "Batches").
 *
 * Every random choice is a pure function of (seed, purpose, epoch, index) through rng.h, so a
 * CUDA sampler given the same seed draws the same negatives and the same order. */
#ifndef TIMIREC_SAMPLER_H
#define TIMIREC_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "timirec/corpus.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A batch of instances. Arrays have row stride L (the batch's own padded length). */
typedef struct {
    int B;            /* instances */
    int L;            /* padded history length: the longest history in the batch */
    int C;            /* candidates per instance: 1 + negatives */
    int32_t *user;    /* (B) */
    int32_t *length;  /* (B) real history items */
    int32_t *hist;    /* (B, L) item ids, oldest first, right-padded with 0 */
    int32_t *pos;     /* (B, L) position index: length - l for real items (newest = 1), 0 pad */
    float *mask;      /* (B, L) 1 for real items, 0 for padding */
    int32_t *cand;    /* (B, C) target first, then the negatives */
    int cap_B, cap_L, cap_C; /* allocated capacity */
} batch_t;

/* Allocate room for up to max_B instances with histories up to max_L and max_C candidates. */
void batch_alloc(batch_t *b, int max_B, int max_L, int max_C);
void batch_free(batch_t *b);

/* Largest history any instance of the corpus can have with this history_max (<= 0: none). */
int sampler_max_history(const corpus_t *c, int history_max);

/* Training negatives for one epoch: neg[i * num_neg + j] for train instance i (in file
 * order), drawn uniformly from 1..n_items-1 and redrawn while in the user's train set.
 * Returns 0, or -1 with a message when some user has no item left to draw. */
int sampler_train_negatives(const corpus_t *c, uint64_t seed, uint32_t epoch, int num_neg,
                            int32_t *neg, char *err, size_t errlen);

/* The check sampler_train_negatives starts with (also run before the device's draw): -1 with
 * a message when some training user has every item in train, else 0. */
int sampler_check_negatives(const corpus_t *c, int num_neg, char *err, size_t errlen);

/* The epoch's order of n instances: perm sorted by a 64-bit Philox key per instance (ties, of
 * probability 2^-64, by index): a uniform permutation that a GPU radix sort reproduces. */
void sampler_shuffle(int64_t n, uint64_t seed, uint32_t epoch, int64_t *perm);

/* The instances of a seeded sample of n_users users of `phase` (--eval_users): the users with
 * an instance in the phase ordered by a 64-bit Philox key (RNG_EVAL_USERS, epoch = phase,
 * index = user id; ties by id), the first n_users kept, and inst gets all their instances in
 * instance order. A pure function of (seed, phase); n_users <= 0 or at least the phase's
 * users: every instance. inst: room for the phase's n_inst. Returns the count. */
int64_t sampler_eval_users(const corpus_t *c, int phase, uint64_t seed, int64_t n_users, int64_t *inst);

/* Fill b with the instances inst[0 .. B) of `phase` (instance indices, not rows).
 * Candidates: train: target + train_neg of the instance (num_neg each);
 * dev/test: target + the file's neg_items, or with test_all target + every item 1..N-1.
 * Fatal if b is too small (allocate with batch_alloc from the sizes above). */
void batch_fill(batch_t *b, const corpus_t *c, int phase, const int64_t *inst, int B,
                int history_max, const int32_t *train_neg, int num_neg, int test_all);

/* Fill b with the histories at the end of the whole sequences (train, dev and test rows) of
 * users[0 .. B), each with at least one row: what the model reads to recommend what comes
 * next. One candidate per row, item 1 (the user vectors do not depend on it). */
void batch_fill_users(batch_t *b, const corpus_t *c, const int32_t *users, int B,
                      int history_max);

/* Candidates per instance for a phase: 1 + num_neg (train), 1 + n_neg or n_items (eval). */
int sampler_n_candidates(const corpus_t *c, int phase, int num_neg, int test_all);

#ifdef __cplusplus
}
#endif
#endif
