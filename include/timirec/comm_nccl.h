/* The NCCL transport of data-parallel training on GPU ranks (docs/ARCHITECTURE.md,
 * "Data-parallel training"): one GPU per rank, the communicator bootstrapped over comm.h (rank
 * 0 makes the NCCL unique id, comm_bcast gives it to the others), the collectives on device
 * memory. Built when the Makefile finds NCCL (NCCL_HOME, or the nvidia-nccl wheel that PyTorch
 * ships); a build without it links src/nonccl/, which says "built without NCCL".
 *
 * The same guarantees as comm.h: every rank gets the same bits, run to run, and sums run in
 * rank order, ((x_0 + x_1) + x_2) + ..., so NCCL ranks and MPI ranks give the same bits. That
 * is why the dense sum is not ncclAllReduce (whose order is NCCL's ring or tree): it is
 * comm.c's scheme on the device, an all-to-all of chunks (grouped ncclSend/ncclRecv), each
 * rank adding its chunk's copies in rank order, then ncclAllGather; the traffic of a ring
 * all-reduce, 2 (size - 1) / size of the vector per rank.
 *
 * Each collective waits for its work before returning: it polls ncclCommGetAsyncError and the
 * stream against a deadline (TIMIREC_COMM_TIMEOUT seconds, default 300, as comm.h); on an NCCL
 * or CUDA error or at the deadline it calls ncclCommAbort and stops every rank through
 * comm_abort, naming this rank and the collective. So they are not for a graph capture or a
 * no-sync region (gpu_ops.h): call them between the steps' device work. Every rank calls the
 * same collectives in the same order with the same sizes (`what` names the call in messages).
 * Pointers are device memory unless marked host; stream is a cudaStream_t (NULL: the legacy
 * default stream, the backend's). */
#ifndef TIMIREC_COMM_NCCL_H
#define TIMIREC_COMM_NCCL_H

#include <stddef.h>
#include <stdint.h>

#include "timirec/comm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct comm_nccl comm_nccl_t;

/* 1 when this binary has the NCCL transport. */
int comm_nccl_built(void);

/* The NCCL communicator of c's ranks, this rank on GPU device (cudaSetDevice). Every rank
 * calls it (it broadcasts over c). Returns 0, or -1 with a message (no NCCL in this build, no
 * such device, NCCL refused); in a job of several ranks the caller then stops them all with
 * comm_abort. */
int comm_nccl_init(comm_t *c, int device, comm_nccl_t **out, char *err, size_t errlen);
void comm_nccl_finalize(comm_nccl_t *nc); /* NULL: nothing */

/* x (n) = the sum of every rank's x, in rank order (comm_sum_f32's bits). */
void comm_nccl_sum_f32(comm_nccl_t *nc, float *x, int64_t n, void *stream, const char *what);

/* The sum over ranks of sparse rows, comm_sum_rows on the device: rank r holds n distinct row
 * ids (any order) with their rows (n, d). The ids and rows are gathered (ncclAllGather, every
 * rank padded to the largest n), the union of the ids is sorted on the host, and a kernel sums
 * each id's rows in rank order (comm_sum_rows's bits). *ids_out (u) gets the union, ascending,
 * *rows_out (u, d) the sums: device buffers of the communicator, valid until its next
 * comm_nccl_sum_rows. Returns u. */
int64_t comm_nccl_sum_rows(comm_nccl_t *nc, const int64_t *ids, const float *rows, int64_t n,
                           int d, int64_t **ids_out, float **rows_out, void *stream,
                           const char *what);

/* Time in this communicator's collectives and bytes this rank sent (benchmarks). */
comm_stats_t comm_nccl_stats(const comm_nccl_t *nc);

#ifdef __cplusplus
}
#endif
#endif
