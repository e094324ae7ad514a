/* Collectives between the ranks of a data-parallel run (docs/ARCHITECTURE.md, "Data-parallel
 * training"). Two transports behind one interface:
 *   - one process (src/comm.c): rank 0 of 1, every collective a copy or nothing;
 *   - MPI (src/mpi/comm_mpi.c, built when the Makefile finds mpicc: TIMIREC_MPI), used when the
 *     process was started by an MPI launcher (mpirun sets OMPI_COMM_WORLD_SIZE, PMI_SIZE or
 *     PMIX_RANK); a plain start of an MPI build is one process, as without MPI.
 * Rules for callers: every rank calls the same collectives in the same order with the same
 * sizes (the `what` label names the call in error messages).
 * Guarantees: a result is the same bits on every rank and from run to run with the same number
 * of ranks: sums run in rank order, ((x_0 + x_1) + x_2) + ..., whatever the transport does
 * (MPI's own reductions may sum in another order on each rank). A collective that has not
 * finished after the timeout (TIMIREC_COMM_TIMEOUT seconds, default 300) stops every rank with
 * a message naming this rank and the collective: a dead or stuck peer never hangs the job. */
#ifndef TIMIREC_COMM_H
#define TIMIREC_COMM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct comm comm_t;

/* The process's communicator (MPI_Init under a launcher in an MPI build). Returns 0, or -1
 * with a message (an MPI launch that failed to initialise). */
int comm_init(int *argc, char ***argv, comm_t **out, char *err, size_t errlen);
void comm_finalize(comm_t *c); /* NULL: nothing */

int comm_rank(const comm_t *c); /* NULL: 0 */
int comm_size(const comm_t *c); /* NULL: 1 */
/* One line for logs: "1 process", or "MPI (Open MPI v4.1.4): 2 ranks on host-a, host-b". */
const char *comm_describe(const comm_t *c);
/* 1 when this binary has the MPI transport. */
int comm_mpi_built(void);

/* x (n) = the sum of every rank's x, in rank order. */
void comm_sum_f32(comm_t *c, float *x, int64_t n, const char *what);
void comm_sum_f64(comm_t *c, double *x, int64_t n, const char *what);
/* x (n) = the elementwise maximum over the ranks. */
void comm_max_i64(comm_t *c, int64_t *x, int64_t n, const char *what);
/* root's bytes to every rank. */
void comm_bcast(comm_t *c, void *buf, size_t bytes, int root, const char *what);
/* Concatenation in rank order: rank r gives n_mine elements of elem bytes; counts (size) gets
 * every rank's count; returns the total and *all (malloc'd, freed by the caller) the
 * elements. */
int64_t comm_allgather(comm_t *c, const void *mine, int64_t n_mine, size_t elem, void **all,
                       int64_t *counts, const char *what);
/* The sum over ranks of sparse rows: rank r holds n distinct row ids (any order) with their
 * rows (n, d); *ids_out gets the union of the ids, ascending, and *rows_out each row's sum
 * over the ranks that hold it, in rank order (both malloc'd). Returns the union's size. */
int64_t comm_sum_rows(comm_t *c, const int64_t *ids, const float *rows, int64_t n, int d,
                      int64_t **ids_out, float **rows_out, const char *what);

/* Stop every rank: "timirec: rank R of N: <message>" on stderr, then exit(code) alone or
 * MPI_Abort. */
#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 3, 4)))
#endif
void comm_abort(comm_t *c, int code, const char *fmt, ...);

/* Time spent in collectives and bytes this rank sent, since comm_init (benchmarks). */
typedef struct {
    double seconds;
    uint64_t bytes_sent;
    int64_t calls;
} comm_stats_t;
comm_stats_t comm_stats(const comm_t *c);

#ifdef __cplusplus
}
#endif
#endif
