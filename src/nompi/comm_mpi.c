/* The MPI transport of a build without MPI (no mpicc found): never launched, so comm.c never
 * calls the rest; if something did, it says why instead of misbehaving. */
#include "timirec/comm_mpi.h"

#include "timirec/common.h"

#include <stdlib.h>

static int no_mpi(char *err, size_t errlen) {
    return tmr_error(err, errlen, "this timirec was built without MPI (no mpicc at build time)");
}

int comm_mpi_launched(void) { return 0; }

int comm_mpi_init(int *argc, char ***argv, int *rank, int *size, char *desc, size_t desclen,
                  char *err, size_t errlen) {
    (void)argc, (void)argv, (void)desc, (void)desclen;
    *rank = 0;
    *size = 1;
    return no_mpi(err, errlen);
}

void comm_mpi_finalize(void) {}

int comm_mpi_allgather(const void *mine, size_t n, void *all, double timeout_s, char *err,
                       size_t errlen) {
    (void)mine, (void)n, (void)all, (void)timeout_s;
    return no_mpi(err, errlen);
}

int comm_mpi_allgatherv(const void *mine, const size_t *counts, const size_t *displs, void *all,
                        double timeout_s, char *err, size_t errlen) {
    (void)mine, (void)counts, (void)displs, (void)all, (void)timeout_s;
    return no_mpi(err, errlen);
}

int comm_mpi_alltoall(const void *send, size_t n, void *recv, double timeout_s, char *err,
                      size_t errlen) {
    (void)send, (void)n, (void)recv, (void)timeout_s;
    return no_mpi(err, errlen);
}

int comm_mpi_bcast(void *buf, size_t n, int root, double timeout_s, char *err, size_t errlen) {
    (void)buf, (void)n, (void)root, (void)timeout_s;
    return no_mpi(err, errlen);
}

void comm_mpi_abort(int code) { exit(code); }
