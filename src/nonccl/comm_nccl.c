/* comm_nccl.h in a build without NCCL (no NCCL found, or no nvcc): comm_nccl_init says so, and
 * no communicator can exist for the collectives to be called on. */
#include "timirec/comm_nccl.h"

#include "timirec/common.h"

int comm_nccl_built(void) { return 0; }

int comm_nccl_init(comm_t *c, int device, comm_nccl_t **out, char *err, size_t errlen) {
    (void)c, (void)device;
    *out = NULL;
    return tmr_error(err, errlen, "this timirec was built without NCCL (no NCCL at build time: "
                     "NCCL_HOME, or pip install nvidia-nccl-cu13, then rebuild)");
}

void comm_nccl_finalize(comm_nccl_t *nc) { (void)nc; }

void comm_nccl_sum_f32(comm_nccl_t *nc, float *x, int64_t n, void *stream, const char *what) {
    (void)nc, (void)x, (void)n, (void)stream;
    tmr_fatal("%s: this timirec was built without NCCL", what);
}

int64_t comm_nccl_sum_rows(comm_nccl_t *nc, const int64_t *ids, const float *rows, int64_t n,
                           int d, int64_t **ids_out, float **rows_out, void *stream,
                           const char *what) {
    (void)nc, (void)ids, (void)rows, (void)n, (void)d, (void)ids_out, (void)rows_out, (void)stream;
    tmr_fatal("%s: this timirec was built without NCCL", what);
}

comm_stats_t comm_nccl_stats(const comm_nccl_t *nc) {
    (void)nc;
    comm_stats_t none = {0, 0, 0};
    return none;
}
