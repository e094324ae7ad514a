/* Data-parallel training over comm.h (docs/ARCHITECTURE.md, "Data-parallel training").
 *
 * Every rank holds the whole model and draws the same epoch (negatives and shuffle are pure
 * functions of (seed, epoch)); of every global batch of B rows, rank r of P trains rows
 * dist_slice(B, r, P) as a batch slice (model_batch_t row0/B_all: the loss and gradients are
 * divided by B, the dropout masks drawn at the rows' places in the whole batch). The slices'
 * gradients are then summed in rank order (comm.h: the same bits on every rank), and every rank
 * applies the same optimiser update, so the replicas never drift apart. Evaluation splits the
 * instances the same way and gathers the ranks. One rank (P = 1): none of this runs. */
#ifndef TIMIREC_DIST_H
#define TIMIREC_DIST_H

#include <stdint.h>

#include "timirec/comm.h"
#include "timirec/trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Rows [*lo, *hi) of a batch of n rows for rank r of p: contiguous, in rank order, sizes
 * differing by at most one (some empty when n < p). */
static inline void dist_slice(int64_t n, int r, int p, int64_t *lo, int64_t *hi) {
    *lo = n * r / p;
    *hi = n * (r + 1) / p;
}

/* How the item tables' gradients travel between ranks:
 *   DIST_EXCHANGE_DENSE  the whole gradient buffer summed (each rank sends ~2x the tables);
 *   DIST_EXCHANGE_ROWS   the dense tensors summed, and of the item tables only the rows some
 *                        rank's batch slice touched (all-gather of row ids and rows, summed in
 *                        rank order: comm_sum_rows).
 * The two give the same bits (a row a rank did not touch contributes an exact 0). */
enum { DIST_EXCHANGE_DENSE = 0, DIST_EXCHANGE_ROWS = 1 };

/* The exchange for this model and rank count: the one that sends fewer bytes per step
 * (TIMIREC_GRAD_EXCHANGE=dense|rows overrides). Writes a line saying which and why. */
int dist_choose_exchange(const model_layout_t *lay, int64_t touched_cap, int n_ranks,
                         char *why, size_t whylen);

/* Bring a data-parallel trainer up: t->comm set (size > 1), the exchange chosen (why gets
 * dist_choose_exchange's line; "" for one process), the buffers it needs (the touched-row list
 * grown to hold every rank's rows). Returns 0. */
int dist_attach(trainer_t *t, comm_t *comm, char *why, size_t whylen);

/* After a slice's step: *loss becomes the batch's (the slices' sum) and the verdict is every
 * rank's: returns 1 when any rank's loss was non-finite or its check (bad) failed. */
int dist_agree(trainer_t *t, double *loss, int bad);

/* After a slice's backward (t->grads: this rank's share; t->lazy_rows: this slice's touched
 * rows under LazyAdam): t->grads becomes the sum over ranks on every rank, and under LazyAdam
 * t->lazy_rows / n_lazy_rows the union of every rank's touched rows (ascending). */
void dist_sum_grads(trainer_t *t, const model_batch_t *mb);

#ifdef __cplusplus
}
#endif
#endif
