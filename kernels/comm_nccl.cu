/* comm_nccl.h: the NCCL transport on GPU ranks. Built only when the Makefile finds NCCL (never
 * emulated: NCCL has no host twin). Every NCCL call runs on a non-blocking communicator, so
 * no call can hang: a call that answers ncclInProgress, and the stream's work, are polled
 * against the deadline (wait_ready, wait_stream); any failure aborts the communicator and
 * stops every rank through comm_abort. */
#include <nccl.h>
#include <sched.h>

#include <stdlib.h>
#include <string.h>

#include "common.cuh"
#include "timirec/comm_nccl.h"

struct comm_nccl {
    comm_t *c;
    ncclComm_t comm;
    int rank, size;
    double timeout_s;
    comm_stats_t stats;
    /* Device scratch, grown as needed, never shrunk (bytes in cap_*). */
    float *recv, *acc, *gath;         /* sum_f32: (size, chunk), (chunk), (size, chunk) */
    size_t cap_recv, cap_acc, cap_gath;
    int64_t *count1, *counts;         /* sum_rows: this rank's n, every rank's n */
    int64_t *pad_ids, *all_ids;       /* (m_pad), (size, m_pad) */
    float *pad_rows, *all_rows;       /* (m_pad, d), (size, m_pad, d) */
    int64_t *d_place, *d_start;       /* the union's order: gathered row of each term, runs */
    int64_t *ids_out;                 /* (u) */
    float *rows_out;                  /* (u, d) */
    size_t cap_count1, cap_counts, cap_pad_ids, cap_all_ids, cap_pad_rows, cap_all_rows,
        cap_d_place, cap_d_start, cap_ids_out, cap_rows_out;
};

extern "C" int comm_nccl_built(void) { return 1; }

/* Stop every rank: the communicator aborted (its pending work dropped), then comm_abort. */
__attribute__((noreturn)) static void fail(comm_nccl_t *nc, const char *what, const char *why) {
    if (nc->comm) ncclCommAbort(nc->comm);
    nc->comm = NULL;
    comm_abort(nc->c, 3, "NCCL collective \"%s\" failed: %s", what, why);
}

static void check_cuda(comm_nccl_t *nc, cudaError_t e, const char *call, const char *what) {
    if (e == cudaSuccess) return;
    char why[512];
    snprintf(why, sizeof why, "%s: %s", call, cudaGetErrorString(e));
    fail(nc, what, why);
}
#define NC_CUDA(nc, call, what) check_cuda(nc, (call), #call, what)

/* The communicator's state after a call that returned rc: ncclSuccess, or ncclInProgress
 * polled with ncclCommGetAsyncError until it settles. Fails on an error or at deadline. */
static void wait_ready(comm_nccl_t *nc, ncclResult_t rc, const char *call, const char *what,
                       double deadline) {
    while (rc == ncclInProgress) {
        if (tmr_now() > deadline) {
            char why[256];
            snprintf(why, sizeof why, "%s: no answer within %.0f s (TIMIREC_COMM_TIMEOUT): a "
                     "rank died or is stuck", call, nc->timeout_s);
            fail(nc, what, why);
        }
        sched_yield();
        if (ncclCommGetAsyncError(nc->comm, &rc) != ncclSuccess) rc = ncclInternalError;
    }
    if (rc != ncclSuccess) {
        char why[768];
        snprintf(why, sizeof why, "%s: %s (%s)", call, ncclGetErrorString(rc),
                 ncclGetLastError(nc->comm));
        fail(nc, what, why);
    }
}
#define NC_NCCL(nc, call, what, deadline) wait_ready(nc, (call), #call, what, deadline)

/* Wait until the stream's work (the collectives' kernels with it) is done, watching NCCL's
 * asynchronous error: a peer that dies mid-collective shows there, or as the deadline. */
static void wait_stream(comm_nccl_t *nc, cudaStream_t s, const char *what, double deadline) {
    for (;;) {
        ncclResult_t async = ncclSuccess;
        if (ncclCommGetAsyncError(nc->comm, &async) != ncclSuccess) async = ncclInternalError;
        if (async != ncclSuccess && async != ncclInProgress) wait_ready(nc, async, "collective", what, deadline);
        cudaError_t q = cudaStreamQuery(s);
        if (q == cudaSuccess) return;
        if (q != cudaErrorNotReady) check_cuda(nc, q, "cudaStreamQuery", what);
        if (tmr_now() > deadline) {
            char why[256];
            snprintf(why, sizeof why, "not finished within %.0f s (TIMIREC_COMM_TIMEOUT): a rank "
                     "died or is stuck", nc->timeout_s);
            fail(nc, what, why);
        }
        sched_yield();
    }
}

/* *p holds at least bytes (device; contents not kept). */
static void grow(comm_nccl_t *nc, void **p, size_t *cap, size_t bytes, const char *what) {
    if (bytes <= *cap && *p) return;
    if (*p) NC_CUDA(nc, cudaFree(*p), what);
    *p = NULL;
    *cap = 0;
    NC_CUDA(nc, cudaMalloc(p, bytes > 0 ? bytes : 1), what);
    *cap = bytes;
}
#define GROW(nc, field, bytes, what) grow(nc, (void **)&(nc)->field, &(nc)->cap_##field, bytes, what)

extern "C" int comm_nccl_init(comm_t *c, int device, comm_nccl_t **out, char *err, size_t errlen) {
    *out = NULL;
    CUDA_TRY(cudaSetDevice(device));
    CUDA_TRY(cudaFree(0)); /* the context now: NCCL needs it */
    comm_nccl_t *nc = (comm_nccl_t *)tmr_calloc(1, sizeof *nc);
    nc->c = c;
    nc->rank = comm_rank(c);
    nc->size = comm_size(c);
    const char *t = getenv("TIMIREC_COMM_TIMEOUT");
    nc->timeout_s = t && *t ? atof(t) : 300.0;
    if (!(nc->timeout_s > 0)) nc->timeout_s = 300.0;
    /* Rank 0's id reaches everyone even when it could not make one (all zero bytes): then
     * every rank fails the same way below instead of waiting for the others. */
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    ncclResult_t rc_id = nc->rank == 0 ? ncclGetUniqueId(&id) : ncclSuccess;
    int ok_id = rc_id == ncclSuccess;
    comm_bcast(c, &ok_id, sizeof ok_id, 0, "NCCL unique id status");
    comm_bcast(c, &id, sizeof id, 0, "NCCL unique id");
    if (!ok_id) {
        tmr_error(err, errlen, "ncclGetUniqueId on rank 0 failed: %s",
                  nc->rank == 0 ? ncclGetErrorString(rc_id) : "see rank 0");
        free(nc);
        return -1;
    }
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    ncclResult_t rc = ncclCommInitRankConfig(&nc->comm, nc->size, id, nc->rank, &cfg);
    const double deadline = tmr_now() + nc->timeout_s;
    while (rc == ncclInProgress && tmr_now() <= deadline) {
        sched_yield();
        if (ncclCommGetAsyncError(nc->comm, &rc) != ncclSuccess) rc = ncclInternalError;
    }
    if (rc != ncclSuccess) {
        tmr_error(err, errlen, "ncclCommInitRankConfig (rank %d of %d, device %d): %s", nc->rank,
                  nc->size, device, rc == ncclInProgress ? "no answer within TIMIREC_COMM_TIMEOUT"
                                                         : ncclGetErrorString(rc));
        if (nc->comm) ncclCommAbort(nc->comm);
        free(nc);
        return -1;
    }
    *out = nc;
    return 0;
}

extern "C" void comm_nccl_finalize(comm_nccl_t *nc) {
    if (!nc) return;
    if (nc->comm) {
        /* Flush what is pending (ncclCommFinalize), then free; a failure here only loses it. */
        const double deadline = tmr_now() + nc->timeout_s;
        ncclResult_t rc = ncclCommFinalize(nc->comm);
        while (rc == ncclInProgress && tmr_now() <= deadline) {
            sched_yield();
            if (ncclCommGetAsyncError(nc->comm, &rc) != ncclSuccess) rc = ncclInternalError;
        }
        if (rc == ncclSuccess) ncclCommDestroy(nc->comm);
        else ncclCommAbort(nc->comm);
    }
    void *bufs[] = {nc->recv,     nc->acc,     nc->gath,    nc->count1,  nc->counts,
                    nc->pad_ids,  nc->all_ids, nc->pad_rows, nc->all_rows, nc->d_place,
                    nc->d_start,  nc->ids_out, nc->rows_out};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (bufs[i]) cudaFree(bufs[i]);
    free(nc);
}

extern "C" comm_stats_t comm_nccl_stats(const comm_nccl_t *nc) {
    comm_stats_t none = {0, 0, 0};
    return nc ? nc->stats : none;
}

/* acc[i] = recv[0, i] + recv[1, i] + ... in rank order (comm.c's order), for i < n; 0 for
 * n <= i < chunk (the padding the all-gather carries). recv (P, chunk). */
__global__ void ordered_sum_kernel(int64_t chunk, const float *__restrict__ recv, int P,
                                   int64_t n, float *__restrict__ acc) {
    THREAD_INDEX(i, chunk);
    if (i >= n) {
        acc[i] = 0.0f;
        return;
    }
    float s = recv[i];
    for (int r = 1; r < P; r++) s += recv[(int64_t)r * chunk + i];
    acc[i] = s;
}

/* Elements of chunk r of a vector of n split in chunks of `chunk`. */
static int64_t chunk_len(int64_t n, int64_t chunk, int r) {
    int64_t len = n - (int64_t)r * chunk;
    return len < 0 ? 0 : len > chunk ? chunk : len;
}

extern "C" void comm_nccl_sum_f32(comm_nccl_t *nc, float *x, int64_t n, void *stream,
                                  const char *what) {
    if (n <= 0) return;
    cudaStream_t s = (cudaStream_t)stream;
    const int P = nc->size, me = nc->rank;
    const int64_t chunk = (n + P - 1) / P; /* elements per owner, the last chunks short */
    const int64_t mine = chunk_len(n, chunk, me);
    const size_t cb = (size_t)chunk * sizeof(float);
    GROW(nc, recv, (size_t)P * cb, what);
    GROW(nc, acc, cb, what);
    GROW(nc, gath, (size_t)P * cb, what);
    const double t0 = tmr_now(), deadline = t0 + nc->timeout_s;
    /* All-to-all: chunk r of x to rank r; every rank's copy of my chunk into recv row r. */
    NC_NCCL(nc, ncclGroupStart(), what, deadline);
    uint64_t sent = 0;
    for (int r = 0; r < P; r++) {
        const int64_t len_r = chunk_len(n, chunk, r);
        if (len_r > 0) {
            NC_NCCL(nc, ncclSend(x + (int64_t)r * chunk, (size_t)len_r, ncclFloat, r, nc->comm, s),
                    what, deadline);
            sent += r != me ? (uint64_t)len_r * sizeof(float) : 0;
        }
        if (mine > 0)
            NC_NCCL(nc, ncclRecv(nc->recv + (int64_t)r * chunk, (size_t)mine, ncclFloat, r,
                                 nc->comm, s),
                    what, deadline);
    }
    NC_NCCL(nc, ncclGroupEnd(), what, deadline);
    const unsigned blocks = (unsigned)((chunk + TMR_THREADS - 1) / TMR_THREADS);
    ordered_sum_kernel<<<blocks, TMR_THREADS, 0, s>>>(chunk, nc->recv, P, mine, nc->acc);
    NC_CUDA(nc, cudaGetLastError(), what);
    NC_NCCL(nc, ncclAllGather(nc->acc, nc->gath, (size_t)chunk, ncclFloat, nc->comm, s), what,
            deadline);
    NC_CUDA(nc, cudaMemcpyAsync(x, nc->gath, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice, s),
            what);
    wait_stream(nc, s, what, deadline);
    nc->stats.seconds += tmr_now() - t0;
    nc->stats.bytes_sent += sent + (uint64_t)(P - 1) * cb;
    nc->stats.calls++;
}

/* rows_out[u, j] = the rows of union entry u summed in rank order: terms start[u] ..
 * start[u + 1] - 1 of place (gathered row indices, ascending rank), the first copied, the
 * others added (comm_sum_rows's order). One thread per (u, j). */
__global__ void rows_sum_kernel(int64_t n, const float *__restrict__ all_rows,
                                const int64_t *__restrict__ place,
                                const int64_t *__restrict__ start, int d,
                                float *__restrict__ rows_out) {
    THREAD_INDEX(i, n);
    const int64_t u = i / d;
    const int j = (int)(i % d);
    float s = all_rows[place[start[u]] * d + j];
    for (int64_t k = start[u] + 1; k < start[u + 1]; k++) s += all_rows[place[k] * d + j];
    rows_out[i] = s;
}

/* (id, gathered row): sorted by id, then row (= rank order). */
typedef struct {
    int64_t id, at;
} id_at_t;

static int cmp_id_at(const void *pa, const void *pb) {
    const id_at_t *a = (const id_at_t *)pa, *b = (const id_at_t *)pb;
    if (a->id != b->id) return a->id < b->id ? -1 : 1;
    return (a->at > b->at) - (a->at < b->at);
}

/* The union's order from the gathered ids (host): all_ids (P, m_pad) of which counts[r] are
 * rank r's. Fills place (m) and start (u + 1), union ids (u); returns u. */
static int64_t union_order(const int64_t *all_ids, const int64_t *counts, int P, int64_t m_pad,
                           int64_t *place, int64_t *start, int64_t *ids_u) {
    int64_t m = 0;
    for (int r = 0; r < P; r++) m += counts[r];
    id_at_t *order = (id_at_t *)tmr_malloc(tmr_mul_size((size_t)(m > 0 ? m : 1), sizeof *order));
    int64_t k = 0;
    for (int r = 0; r < P; r++)
        for (int64_t i = 0; i < counts[r]; i++) order[k++] = (id_at_t){all_ids[r * m_pad + i], r * m_pad + i};
    qsort(order, (size_t)m, sizeof *order, cmp_id_at);
    int64_t u = 0;
    for (int64_t i = 0; i < m; i++) {
        if (i == 0 || order[i].id != order[i - 1].id) {
            start[u] = i;
            ids_u[u++] = order[i].id;
        }
        place[i] = order[i].at;
    }
    start[u] = m;
    free(order);
    return u;
}

/* Every rank's count (device all-gather of one int64) into counts (host, size). */
static void gather_counts(comm_nccl_t *nc, int64_t n, int64_t *counts, cudaStream_t s,
                          const char *what, double deadline) {
    GROW(nc, count1, sizeof(int64_t), what);
    GROW(nc, counts, (size_t)nc->size * sizeof(int64_t), what);
    NC_CUDA(nc, cudaMemcpyAsync(nc->count1, &n, sizeof n, cudaMemcpyHostToDevice, s), what);
    NC_NCCL(nc, ncclAllGather(nc->count1, nc->counts, 1, ncclInt64, nc->comm, s), what, deadline);
    NC_CUDA(nc, cudaMemcpyAsync(counts, nc->counts, (size_t)nc->size * sizeof(int64_t),
                                cudaMemcpyDeviceToHost, s),
            what);
    wait_stream(nc, s, what, deadline);
}

extern "C" int64_t comm_nccl_sum_rows(comm_nccl_t *nc, const int64_t *ids, const float *rows,
                                      int64_t n, int d, int64_t **ids_out, float **rows_out,
                                      void *stream, const char *what) {
    cudaStream_t s = (cudaStream_t)stream;
    const int P = nc->size;
    const double t0 = tmr_now(), deadline = t0 + nc->timeout_s;
    int64_t *counts = (int64_t *)tmr_malloc((size_t)P * sizeof *counts);
    gather_counts(nc, n, counts, s, what, deadline);
    int64_t m_pad = 0; /* every rank's block in the gathers: the largest count */
    for (int r = 0; r < P; r++) m_pad = counts[r] > m_pad ? counts[r] : m_pad;
    const size_t row_b = (size_t)d * sizeof(float);
    GROW(nc, pad_ids, (size_t)m_pad * sizeof(int64_t), what);
    GROW(nc, pad_rows, (size_t)m_pad * row_b, what);
    GROW(nc, all_ids, (size_t)P * (size_t)m_pad * sizeof(int64_t), what);
    GROW(nc, all_rows, (size_t)P * (size_t)m_pad * row_b, what);
    int64_t u = 0;
    if (m_pad > 0) {
        /* Padded to m_pad (zeros past n: defined bytes, never summed). */
        NC_CUDA(nc, cudaMemsetAsync(nc->pad_ids, 0, (size_t)m_pad * sizeof(int64_t), s), what);
        NC_CUDA(nc, cudaMemsetAsync(nc->pad_rows, 0, (size_t)m_pad * row_b, s), what);
        if (n > 0) {
            NC_CUDA(nc, cudaMemcpyAsync(nc->pad_ids, ids, (size_t)n * sizeof(int64_t),
                                        cudaMemcpyDeviceToDevice, s), what);
            NC_CUDA(nc, cudaMemcpyAsync(nc->pad_rows, rows, (size_t)n * row_b,
                                        cudaMemcpyDeviceToDevice, s), what);
        }
        NC_NCCL(nc, ncclGroupStart(), what, deadline);
        NC_NCCL(nc, ncclAllGather(nc->pad_ids, nc->all_ids, (size_t)m_pad, ncclInt64, nc->comm, s),
                what, deadline);
        NC_NCCL(nc, ncclAllGather(nc->pad_rows, nc->all_rows, (size_t)m_pad * (size_t)d, ncclFloat,
                                  nc->comm, s),
                what, deadline);
        NC_NCCL(nc, ncclGroupEnd(), what, deadline);
        const size_t all_n = (size_t)P * (size_t)m_pad;
        int64_t *h_ids = (int64_t *)tmr_malloc(all_n * sizeof *h_ids);
        NC_CUDA(nc, cudaMemcpyAsync(h_ids, nc->all_ids, all_n * sizeof *h_ids, cudaMemcpyDeviceToHost, s),
                what);
        wait_stream(nc, s, what, deadline);
        int64_t *place = (int64_t *)tmr_malloc(all_n * sizeof *place);
        int64_t *start = (int64_t *)tmr_malloc((all_n + 1) * sizeof *start);
        int64_t *ids_u = (int64_t *)tmr_malloc(all_n * sizeof *ids_u);
        u = union_order(h_ids, counts, P, m_pad, place, start, ids_u);
        int64_t m = start[u];
        GROW(nc, d_place, (size_t)m * sizeof(int64_t), what);
        GROW(nc, d_start, (size_t)(u + 1) * sizeof(int64_t), what);
        GROW(nc, ids_out, (size_t)u * sizeof(int64_t), what);
        GROW(nc, rows_out, (size_t)u * row_b, what);
        NC_CUDA(nc, cudaMemcpyAsync(nc->d_place, place, (size_t)m * sizeof *place, cudaMemcpyHostToDevice, s), what);
        NC_CUDA(nc, cudaMemcpyAsync(nc->d_start, start, (size_t)(u + 1) * sizeof *start, cudaMemcpyHostToDevice, s),
                what);
        NC_CUDA(nc, cudaMemcpyAsync(nc->ids_out, ids_u, (size_t)u * sizeof *ids_u, cudaMemcpyHostToDevice, s), what);
        const int64_t total = u * d;
        if (total > 0) {
            const unsigned blocks = (unsigned)((total + TMR_THREADS - 1) / TMR_THREADS);
            rows_sum_kernel<<<blocks, TMR_THREADS, 0, s>>>(total, nc->all_rows, nc->d_place,
                                                           nc->d_start, d, nc->rows_out);
            NC_CUDA(nc, cudaGetLastError(), what);
        }
        wait_stream(nc, s, what, deadline); /* before the host arrays go */
        free(h_ids);
        free(place);
        free(start);
        free(ids_u);
    } else {
        GROW(nc, ids_out, sizeof(int64_t), what);
        GROW(nc, rows_out, row_b, what);
    }
    *ids_out = nc->ids_out;
    *rows_out = nc->rows_out;
    nc->stats.seconds += tmr_now() - t0;
    nc->stats.bytes_sent += (uint64_t)(P - 1) * ((uint64_t)m_pad * (sizeof(int64_t) + row_b) + sizeof(int64_t));
    nc->stats.calls++;
    free(counts);
    return u;
}
