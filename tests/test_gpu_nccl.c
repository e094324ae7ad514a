/* The NCCL transport (comm_nccl.h) on a 1-rank communicator, one process on GPU 0: the dense
 * sum is the identity and the sparse row sum is comm_sum_rows's result, both bit for bit
 * against the CPU transport (comm.h) on the same inputs, through every NCCL call of the
 * collectives (self send/receive, all-gathers of counts, ids and rows; the ordered-sum
 * kernels). Sizes: empty, 1, not a multiple of anything, ~1M floats; rows with d 1 and 64,
 * ids distinct in random order, none on one call. Several ranks need one GPU each (NCCL
 * refuses two ranks on one device): not tested here. SKIP without a CUDA build, a GPU, or
 * NCCL. Not emulated: NCCL has no host twin (the Makefile leaves it out of test_emu_*). */
#include "test_util.h"
#include "timirec/comm.h"
#include "timirec/comm_nccl.h"
#include "timirec/cuda.h"
#include "timirec/rng.h"

#ifndef TIMIREC_CUDA
int main(void) {
    printf("SKIP: built without CUDA (no nvcc)\n");
    return TU_SKIP;
}
#else
#include "timirec/gpu_ops.h"

/* n floats with |x| in [0.5, 1.5) and a random sign (never zero). */
static float *rand_floats(int64_t n, uint32_t tag) {
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);
    for (int64_t i = 0; i < n; i++) {
        float v = 0.5f + rng_uniform01(rng_u32(5, RNG_TEST, tag, (uint64_t)i, 0));
        x[i] = (rng_u32(5, RNG_TEST, tag, (uint64_t)i, 1) & 1u) ? -v : v;
    }
    return x;
}

static void check_sum(comm_t *c, comm_nccl_t *nc, int64_t n) {
    float *x = rand_floats(n, 1), *cpu = malloc((size_t)(n > 0 ? n : 1) * sizeof *cpu);
    float *got = malloc((size_t)(n > 0 ? n : 1) * sizeof *got);
    memcpy(cpu, x, (size_t)n * sizeof *x);
    comm_sum_f32(c, cpu, n, "cpu sum");
    float *dx = gpu_malloc((size_t)n * sizeof *dx);
    gpu_to_device(dx, x, (size_t)n * sizeof *x);
    comm_nccl_sum_f32(nc, dx, n, NULL, "nccl sum");
    gpu_to_host(got, dx, (size_t)n * sizeof *got);
    CHECK(n == 0 || memcmp(got, cpu, (size_t)n * sizeof *got) == 0, "sum of %lld floats: not the "
          "CPU transport's bits", (long long)n);
    gpu_free(dx);
    free(x);
    free(cpu);
    free(got);
}

static void check_rows(comm_t *c, comm_nccl_t *nc, int64_t n, int d, int64_t n_items) {
    /* n distinct ids of [0, n_items) in random order: a partial Fisher-Yates shuffle. */
    int64_t *perm = malloc((size_t)n_items * sizeof *perm), *ids = malloc((size_t)(n > 0 ? n : 1) * sizeof *ids);
    for (int64_t i = 0; i < n_items; i++) perm[i] = i;
    for (int64_t i = 0; i < n; i++) {
        int64_t j = i + (int64_t)(rng_u32(5, RNG_TEST, 2, (uint64_t)i, 0) % (uint32_t)(n_items - i));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        ids[i] = perm[i];
    }
    float *rows = rand_floats(n * d, 3);
    int64_t *cpu_ids;
    float *cpu_rows;
    int64_t u_cpu = comm_sum_rows(c, ids, rows, n, d, &cpu_ids, &cpu_rows, "cpu rows");
    int64_t *d_ids = gpu_malloc((size_t)n * sizeof *d_ids);
    float *d_rows = gpu_malloc((size_t)(n * d) * sizeof *d_rows);
    gpu_to_device(d_ids, ids, (size_t)n * sizeof *ids);
    gpu_to_device(d_rows, rows, (size_t)(n * d) * sizeof *rows);
    int64_t *g_ids_dev;
    float *g_rows_dev;
    int64_t u = comm_nccl_sum_rows(nc, d_ids, d_rows, n, d, &g_ids_dev, &g_rows_dev, NULL, "nccl rows");
    CHECK(u == u_cpu, "rows n %lld d %d: union of %lld ids, the CPU's %lld", (long long)n, d,
          (long long)u, (long long)u_cpu);
    if (u == u_cpu && u > 0) {
        int64_t *g_ids = malloc((size_t)u * sizeof *g_ids);
        float *g_rows = malloc((size_t)(u * d) * sizeof *g_rows);
        gpu_to_host(g_ids, g_ids_dev, (size_t)u * sizeof *g_ids);
        gpu_to_host(g_rows, g_rows_dev, (size_t)(u * d) * sizeof *g_rows);
        CHECK(memcmp(g_ids, cpu_ids, (size_t)u * sizeof *g_ids) == 0, "rows n %lld d %d: ids differ",
              (long long)n, d);
        CHECK(memcmp(g_rows, cpu_rows, (size_t)(u * d) * sizeof *g_rows) == 0,
              "rows n %lld d %d: not the CPU transport's bits", (long long)n, d);
        free(g_ids);
        free(g_rows);
    }
    gpu_free(d_ids);
    gpu_free(d_rows);
    free(cpu_ids);
    free(cpu_rows);
    free(perm);
    free(ids);
    free(rows);
}

int main(int argc, char **argv) {
    char desc[512], err[1024] = "";
    if (tmr_cuda_describe(desc, sizeof desc) == 0) {
        printf("SKIP: %s\n", desc);
        return TU_SKIP;
    }
    if (!comm_nccl_built()) {
        printf("SKIP: built without NCCL (no NCCL_HOME or python3 nvidia.nccl at build time)\n");
        return TU_SKIP;
    }
    comm_t *c;
    CHECK(comm_init(&argc, &argv, &c, err, sizeof err) == 0, "comm_init: %s", err);
    CHECK(comm_size(c) == 1, "run as one process (size %d)", comm_size(c));
    comm_nccl_t *nc = NULL;
    int rc = comm_nccl_init(c, 0, &nc, err, sizeof err);
    CHECK(rc == 0, "comm_nccl_init: %s", err);
    if (rc != 0) return tu_finish("test_gpu_nccl");
    const int64_t sizes[] = {0, 1, 1000003, 1 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) check_sum(c, nc, sizes[i]);
    check_rows(c, nc, 0, 64, 10);
    check_rows(c, nc, 1, 1, 10);
    check_rows(c, nc, 5000, 64, 100000);
    check_rows(c, nc, 777, 1, 777);
    comm_stats_t st = comm_nccl_stats(nc);
    CHECK(st.calls == 7, "%lld collectives counted, 7 made (the empty sum is none)", (long long)st.calls);
    comm_nccl_finalize(nc);
    comm_finalize(c);
    printf("%s: NCCL 1-rank sums and row sums equal the CPU transport's bits\n", desc);
    return tu_finish("test_gpu_nccl");
}
#endif
