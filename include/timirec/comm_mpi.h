/* The MPI transport under comm.h (internal to src/comm.c): src/mpi/comm_mpi.c when the build
 * found mpicc (TIMIREC_MPI), else src/nompi/comm_mpi.c, whose comm_mpi_launched answers 0 so
 * that nothing else is called. comm.c checks sizes, keeps the statistics and handles one rank
 * itself; these run only with size > 1. Each returns 0, or -1 after the timeout or an MPI error with a
 * message in err (comm.c then aborts every rank). */
#ifndef TIMIREC_COMM_MPI_H
#define TIMIREC_COMM_MPI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when an MPI launcher started this process (its environment says so) and the build has MPI. */
int comm_mpi_launched(void);
/* MPI_Init_thread; rank, size and a description ("MPI (Open MPI v4.1.4): 2 ranks on a, b"). */
int comm_mpi_init(int *argc, char ***argv, int *rank, int *size, char *desc, size_t desclen,
                  char *err, size_t errlen);
void comm_mpi_finalize(void);
/* Every rank's n bytes from `mine` into all (size * n bytes), rank order; waits at most
 * timeout_s. */
int comm_mpi_allgather(const void *mine, size_t n, void *all, double timeout_s, char *err,
                       size_t errlen);
/* Rank r's counts[r] bytes (counts known on every rank) into all at displs[r], rank order. */
int comm_mpi_allgatherv(const void *mine, const size_t *counts, const size_t *displs, void *all,
                        double timeout_s, char *err, size_t errlen);
/* Every rank's n bytes per destination: send (size * n), recv (size * n): block r goes to rank
 * r, block r of recv came from rank r. */
int comm_mpi_alltoall(const void *send, size_t n, void *recv, double timeout_s, char *err,
                      size_t errlen);
int comm_mpi_bcast(void *buf, size_t n, int root, double timeout_s, char *err, size_t errlen);
void comm_mpi_abort(int code);

#ifdef __cplusplus
}
#endif
#endif
