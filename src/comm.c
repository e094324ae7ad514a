/* comm.h over a transport: one rank handled here, several through comm_mpi.h. The sums are
 * built here from data movement alone (an all-to-all, then an all-gather), never from MPI's
 * reductions, so that every rank gets the same bits in rank order: rank r owns chunk r of the
 * vector, receives every rank's copy of that chunk, adds them in rank order and sends the
 * result to all. Each rank sends and receives 2 (size - 1) / size of the vector, as a ring
 * all-reduce does. */
#include "timirec/comm.h"

#include "timirec/comm_mpi.h"
#include "timirec/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct comm {
    int rank, size;
    int mpi; /* MPI initialised (under a launcher, even as 1 rank): finalize it */
    double timeout_s;
    comm_stats_t stats;
    char desc[512];
    /* Test hook TIMIREC_TEST_COMM_SKIP=R:N, R:LABEL or R:LABEL@K: rank R skips its N-th
     * collective (from 1), or its first (K-th) one labelled LABEL, as a buggy or stuck peer
     * would (tests/cli_comm.sh, tests/cli_dist.sh). */
    int64_t entered; /* collectives entered */
    int skip_rank;   /* -1: no hook */
    int64_t skip_call;
    char skip_what[64];
    int64_t skip_nth, seen_what; /* LABEL@K: K, and the LABEL calls so far */
};

int comm_mpi_built(void) {
#ifdef TIMIREC_MPI
    return 1;
#else
    return 0;
#endif
}

int comm_init(int *argc, char ***argv, comm_t **out, char *err, size_t errlen) {
    comm_t *c = tmr_calloc(1, sizeof *c);
    c->size = 1;
    const char *t = getenv("TIMIREC_COMM_TIMEOUT");
    c->timeout_s = t && *t ? atof(t) : 300.0;
    if (!(c->timeout_s > 0)) c->timeout_s = 300.0;
    snprintf(c->desc, sizeof c->desc, "1 process");
    c->skip_rank = -1;
    const char *skip = getenv("TIMIREC_TEST_COMM_SKIP");
    int at = 0;
    if (skip && sscanf(skip, "%d:%n", &c->skip_rank, &at) == 1 && at > 0) {
        char *end;
        c->skip_call = strtoll(skip + at, &end, 10);
        if (*end || end == skip + at) {
            c->skip_call = 0;
            snprintf(c->skip_what, sizeof c->skip_what, "%s", skip + at);
            char *nth = strrchr(c->skip_what, '@');
            c->skip_nth = nth ? strtoll(nth + 1, NULL, 10) : 1;
            if (nth) *nth = 0;
        }
    }
    if (!comm_mpi_built()) { /* an MPI launch of a binary without MPI: N lone rank 0s */
        const char *w = getenv("OMPI_COMM_WORLD_SIZE");
        if (!w) w = getenv("PMI_SIZE");
        if (w && atoi(w) > 1) {
            free(c);
            *out = NULL;
            return tmr_error(err, errlen, "started by an MPI launcher as one of %d ranks, but "
                             "this timirec was built without MPI (no mpicc at build time): each "
                             "process would train alone and write the same files", atoi(w));
        }
    }
    c->mpi = comm_mpi_launched();
    if (c->mpi &&
        comm_mpi_init(argc, argv, &c->rank, &c->size, c->desc, sizeof c->desc, err, errlen)) {
        free(c);
        *out = NULL;
        return -1;
    }
    *out = c;
    return 0;
}

void comm_finalize(comm_t *c) {
    if (!c) return;
    if (c->mpi) comm_mpi_finalize();
    free(c);
}

int comm_rank(const comm_t *c) { return c ? c->rank : 0; }
int comm_size(const comm_t *c) { return c ? c->size : 1; }
const char *comm_describe(const comm_t *c) { return c ? c->desc : "1 process"; }

comm_stats_t comm_stats(const comm_t *c) {
    comm_stats_t none = {0, 0, 0};
    return c ? c->stats : none;
}

void comm_abort(comm_t *c, int code, const char *fmt, ...) {
    fprintf(stderr, "timirec: rank %d of %d: ", comm_rank(c), comm_size(c));
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    if (c && c->mpi) comm_mpi_abort(code);
    exit(code);
}

/* A transport call's result: on failure every rank stops, naming this one and the call. */
static void check(comm_t *c, int rc, const char *what, const char *err) {
    if (rc) comm_abort(c, 3, "collective \"%s\" failed: %s", what, err);
}

/* 1 when this rank is to skip this collective (the test hook above); counts the call. */
static int skipped(comm_t *c, const char *what) {
    c->entered++;
    if (c->rank != c->skip_rank) return 0;
    if (c->skip_call ? c->entered != c->skip_call
                     : strcmp(what, c->skip_what) != 0 || ++c->seen_what != c->skip_nth)
        return 0;
    fprintf(stderr, "timirec: rank %d of %d: TIMIREC_TEST_COMM_SKIP: skipping collective %lld "
                    "\"%s\"\n", c->rank, c->size, (long long)c->entered, what);
    c->skip_rank = -1; /* once */
    return 1;
}

/* Collective bookkeeping around a transport call. */
static double begin(void) { return tmr_now(); }
static void end(comm_t *c, double t0, uint64_t sent) {
    c->stats.seconds += tmr_now() - t0;
    c->stats.bytes_sent += sent;
    c->stats.calls++;
}

/* The ordered sum of n elements of `elem` bytes with add(acc, x, count) (acc += x). */
static void ordered_sum(comm_t *c, void *x, int64_t n, size_t elem,
                        void (*add)(void *acc, const void *x, int64_t count), const char *what) {
    if (!c || c->size == 1 || n <= 0 || skipped(c, what)) return;
    const int P = c->size;
    const int64_t chunk = (n + P - 1) / P; /* elements per owner, the last chunks padded */
    const size_t cb = (size_t)chunk * elem;
    char *send = tmr_calloc((size_t)P, cb), *recv = tmr_malloc(tmr_mul_size((size_t)P, cb));
    memcpy(send, x, (size_t)n * elem);
    char err[512] = "";
    const double t0 = begin();
    check(c, comm_mpi_alltoall(send, cb, recv, c->timeout_s, err, sizeof err), what, err);
    /* recv block r: rank r's copy of my chunk; sum in rank order into block 0 */
    for (int r = 1; r < P; r++) add(recv, recv + (size_t)r * cb, chunk);
    check(c, comm_mpi_allgather(recv, cb, send, c->timeout_s, err, sizeof err), what, err);
    end(c, t0, 2 * (uint64_t)(P - 1) * cb);
    memcpy(x, send, (size_t)n * elem);
    free(send);
    free(recv);
}

static void add_f32(void *acc, const void *x, int64_t n) {
    float *a = acc;
    const float *b = x;
    for (int64_t i = 0; i < n; i++) a[i] += b[i];
}
static void add_f64(void *acc, const void *x, int64_t n) {
    double *a = acc;
    const double *b = x;
    for (int64_t i = 0; i < n; i++) a[i] += b[i];
}
static void max_i64(void *acc, const void *x, int64_t n) {
    int64_t *a = acc;
    const int64_t *b = x;
    for (int64_t i = 0; i < n; i++) a[i] = b[i] > a[i] ? b[i] : a[i];
}

void comm_sum_f32(comm_t *c, float *x, int64_t n, const char *what) {
    ordered_sum(c, x, n, sizeof *x, add_f32, what);
}
void comm_sum_f64(comm_t *c, double *x, int64_t n, const char *what) {
    ordered_sum(c, x, n, sizeof *x, add_f64, what);
}
void comm_max_i64(comm_t *c, int64_t *x, int64_t n, const char *what) {
    ordered_sum(c, x, n, sizeof *x, max_i64, what);
}

void comm_bcast(comm_t *c, void *buf, size_t bytes, int root, const char *what) {
    if (!c || c->size == 1 || bytes == 0 || skipped(c, what)) return;
    char err[512] = "";
    const double t0 = begin();
    check(c, comm_mpi_bcast(buf, bytes, root, c->timeout_s, err, sizeof err), what, err);
    end(c, t0, c->rank == root ? (uint64_t)bytes * (uint64_t)(c->size - 1) : 0);
}

int64_t comm_allgather(comm_t *c, const void *mine, int64_t n_mine, size_t elem, void **all,
                       int64_t *counts, const char *what) {
    if (!c || c->size == 1 || skipped(c, what)) { /* skipped: as if alone */
        *all = tmr_malloc(tmr_mul_size((size_t)(n_mine > 0 ? n_mine : 1), elem));
        if (n_mine > 0) memcpy(*all, mine, (size_t)n_mine * elem);
        for (int r = 0; r < comm_size(c); r++) counts[r] = r == comm_rank(c) ? n_mine : 0;
        return n_mine;
    }
    const int P = c->size;
    char err[512] = "";
    const double t0 = begin();
    check(c, comm_mpi_allgather(&n_mine, sizeof n_mine, counts, c->timeout_s, err, sizeof err),
          what, err);
    size_t *bytes = tmr_malloc((size_t)P * sizeof *bytes), *displs = tmr_malloc((size_t)P * sizeof *displs);
    int64_t total = 0;
    for (int r = 0; r < P; r++) {
        bytes[r] = (size_t)counts[r] * elem;
        displs[r] = (size_t)total * elem;
        total += counts[r];
    }
    *all = tmr_malloc(tmr_mul_size((size_t)(total > 0 ? total : 1), elem));
    check(c, comm_mpi_allgatherv(mine, bytes, displs, *all, c->timeout_s, err, sizeof err), what,
          err);
    end(c, t0, (uint64_t)(P - 1) * ((uint64_t)n_mine * elem + sizeof n_mine));
    free(bytes);
    free(displs);
    return total;
}

/* (id, place in the gathered list): sorted by id, then place (= rank order). */
typedef struct {
    int64_t id, at;
} id_at_t;

static int cmp_id_at(const void *pa, const void *pb) {
    const id_at_t *a = pa, *b = pb;
    if (a->id != b->id) return a->id < b->id ? -1 : 1;
    return (a->at > b->at) - (a->at < b->at);
}

int64_t comm_sum_rows(comm_t *c, const int64_t *ids, const float *rows, int64_t n, int d,
                      int64_t **ids_out, float **rows_out, const char *what) {
    const int P = comm_size(c);
    int64_t *counts = tmr_malloc((size_t)P * sizeof *counts);
    void *all_ids, *all_rows;
    const int64_t m = comm_allgather(c, ids, n, sizeof *ids, &all_ids, counts, what);
    comm_allgather(c, rows, n, (size_t)d * sizeof *rows, &all_rows, counts, what);
    const int64_t *gi = all_ids;
    const float *gr = all_rows;
    id_at_t *order = tmr_malloc(tmr_mul_size((size_t)(m > 0 ? m : 1), sizeof *order));
    for (int64_t i = 0; i < m; i++) order[i] = (id_at_t){gi[i], i};
    qsort(order, (size_t)m, sizeof *order, cmp_id_at);
    int64_t u = 0; /* distinct ids */
    for (int64_t i = 0; i < m; i++) u += i == 0 || order[i].id != order[i - 1].id;
    *ids_out = tmr_malloc(tmr_mul_size((size_t)(u > 0 ? u : 1), sizeof **ids_out));
    *rows_out = tmr_malloc(tmr_mul_size(tmr_mul_size((size_t)(u > 0 ? u : 1), (size_t)d),
                                        sizeof **rows_out));
    int64_t k = -1;
    for (int64_t i = 0; i < m; i++) {
        const float *src = gr + order[i].at * d;
        if (i == 0 || order[i].id != order[i - 1].id) {
            (*ids_out)[++k] = order[i].id;
            memcpy(*rows_out + k * d, src, (size_t)d * sizeof *src);
        } else {
            float *dst = *rows_out + k * d;
            for (int j = 0; j < d; j++) dst[j] += src[j];
        }
    }
    free(order);
    free(all_ids);
    free(all_rows);
    free(counts);
    return u;
}
