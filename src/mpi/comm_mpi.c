/* The MPI transport of comm.h (comm_mpi.h), built when the Makefile finds mpicc. Every
 * collective is non-blocking (MPI_Iallgather, MPI_Iallgatherv, MPI_Ialltoall, MPI_Ibcast) and
 * completed by an MPI_Test loop with a deadline, so that a dead or stuck peer gives a message
 * instead of a hang. MPI counts are int: a transfer larger than the per-call limit
 * (INT_MAX bytes; TIMIREC_TEST_COMM_CHUNK lowers it so tests reach this path) runs in rounds of
 * at most that many bytes per rank. Only the thread that called comm_mpi_init calls MPI
 * (MPI_THREAD_FUNNELED: OpenMP threads never do). */
#include "timirec/comm_mpi.h"

#include "timirec/common.h"

#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_rank, g_size;
static size_t g_limit = INT_MAX; /* bytes per rank in one MPI call */

int comm_mpi_launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

/* An MPI return code as a message; returns -1. */
static int mpi_fail(int rc, const char *call, char *err, size_t errlen) {
    char s[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", rc);
    return tmr_error(err, errlen, "%s: %s", call, s);
}

/* "Open MPI v4.1.4" from the library version's first line, up to its first comma. */
static void library_name(char *out, size_t outlen) {
    char v[MPI_MAX_LIBRARY_VERSION_STRING] = "";
    int len = 0;
    if (MPI_Get_library_version(v, &len) != MPI_SUCCESS) snprintf(v, sizeof v, "unknown MPI");
    v[strcspn(v, ",\r\n")] = 0;
    snprintf(out, outlen, "%s", v);
}

/* "a, b": the ranks' distinct host names in order of first appearance. */
static int host_list(char *out, size_t outlen, char *err, size_t errlen) {
    char mine[MPI_MAX_PROCESSOR_NAME] = "";
    int len = 0, rc = MPI_Get_processor_name(mine, &len);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Get_processor_name", err, errlen);
    const size_t w = MPI_MAX_PROCESSOR_NAME;
    char *all = tmr_malloc(tmr_mul_size((size_t)g_size, w));
    rc = MPI_Allgather(mine, (int)w, MPI_CHAR, all, (int)w, MPI_CHAR, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) {
        free(all);
        return mpi_fail(rc, "MPI_Allgather (host names)", err, errlen);
    }
    size_t at = 0;
    out[0] = 0;
    for (int r = 0; r < g_size; r++) {
        const char *name = all + (size_t)r * w;
        int seen = 0;
        for (int q = 0; q < r && !seen; q++) seen = strcmp(all + (size_t)q * w, name) == 0;
        if (seen || at >= outlen) continue;
        int k = snprintf(out + at, outlen - at, "%s%s", at ? ", " : "", name);
        at += k > 0 ? (size_t)k : 0;
    }
    free(all);
    return 0;
}

int comm_mpi_init(int *argc, char ***argv, int *rank, int *size, char *desc, size_t desclen,
                  char *err, size_t errlen) {
    int provided = 0;
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Init_thread", err, errlen);
    if (provided < MPI_THREAD_FUNNELED)
        return tmr_error(err, errlen, "MPI_Init_thread: the MPI library does not support "
                                      "MPI_THREAD_FUNNELED (provided level %d)", provided);
    /* Failures come back as return codes, which become messages naming the rank. */
    rc = MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Comm_set_errhandler", err, errlen);
    if ((rc = MPI_Comm_rank(MPI_COMM_WORLD, &g_rank)) != MPI_SUCCESS ||
        (rc = MPI_Comm_size(MPI_COMM_WORLD, &g_size)) != MPI_SUCCESS)
        return mpi_fail(rc, "MPI_Comm_rank/size", err, errlen);
    const char *chunk = getenv("TIMIREC_TEST_COMM_CHUNK");
    if (chunk && atol(chunk) > 0 && (size_t)atol(chunk) < g_limit) g_limit = (size_t)atol(chunk);
    char lib[256], hosts[384];
    library_name(lib, sizeof lib);
    if (host_list(hosts, sizeof hosts, err, errlen)) return -1;
    snprintf(desc, desclen, "MPI (%s): %d rank%s on %s", lib, g_size, g_size > 1 ? "s" : "",
             hosts);
    *rank = g_rank;
    *size = g_size;
    return 0;
}

void comm_mpi_finalize(void) { MPI_Finalize(); }

void comm_mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

/* Completes *req by the deadline: 0, or -1 with the timeout message. A non-blocking
 * collective advances only inside MPI_Test (each message fragment needs a call), so the loop
 * polls without sleeping: it yields the core between tests (oversubscribed ranks leave it to
 * their peers), and sleeps 100 us between tests only after 0.1 s of waiting (a slow peer). */
static int wait_for(MPI_Request *req, double deadline, double timeout_s, const char *call,
                    char *err, size_t errlen) {
    const double t0 = tmr_now();
    for (long polls = 0;; polls++) {
        int done = 0, rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, call, err, errlen);
        if (done) return 0;
        if (tmr_now() > deadline)
            return tmr_error(err, errlen,
                             "%s: no answer after %g s (a peer rank died or skipped this "
                             "collective?)",
                             call, timeout_s);
        if (polls < 1000) continue;
        if (tmr_now() - t0 < 0.1) sched_yield();
        else nanosleep(&(struct timespec){0, 100000}, NULL);
    }
}

/* A type of `bytes` contiguous bytes whose extent is `extent` (the stride between ranks'
 * blocks of a round); committed, freed by the caller. */
static int block_type(size_t bytes, size_t extent, MPI_Datatype *t, char *err, size_t errlen) {
    MPI_Datatype c;
    int rc = MPI_Type_contiguous((int)bytes, MPI_BYTE, &c);
    if (rc == MPI_SUCCESS) {
        rc = MPI_Type_create_resized(c, 0, (MPI_Aint)extent, t);
        MPI_Type_free(&c);
    }
    if (rc == MPI_SUCCESS) rc = MPI_Type_commit(t);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "MPI_Type_create_resized", err, errlen);
}

/* Rank r's bytes [o, o + k) of its n land at all + r n + o (alltoall: block r of send goes to
 * rank r, block r of recv came from rank r). */
static int blocks_round(int alltoall, const char *send, size_t n, char *recv, size_t o, size_t k,
                        double deadline, double timeout_s, char *err, size_t errlen) {
    MPI_Datatype t;
    if (block_type(k, n, &t, err, errlen)) return -1;
    MPI_Request req;
    int rc = alltoall ? MPI_Ialltoall(send + o, 1, t, recv + o, 1, t, MPI_COMM_WORLD, &req)
                      : MPI_Iallgather(send + o, (int)k, MPI_BYTE, recv + o, 1, t,
                                       MPI_COMM_WORLD, &req);
    const char *call = alltoall ? "MPI_Ialltoall" : "MPI_Iallgather";
    rc = rc != MPI_SUCCESS ? mpi_fail(rc, call, err, errlen)
                           : wait_for(&req, deadline, timeout_s, call, err, errlen);
    MPI_Type_free(&t);
    return rc;
}

static int blocks(int alltoall, const void *send, size_t n, void *recv, double timeout_s,
                  char *err, size_t errlen) {
    const double deadline = tmr_now() + timeout_s;
    for (size_t o = 0; o < n; o += g_limit) {
        const size_t k = n - o < g_limit ? n - o : g_limit;
        if (blocks_round(alltoall, send, n, recv, o, k, deadline, timeout_s, err, errlen))
            return -1;
    }
    return 0;
}

int comm_mpi_allgather(const void *mine, size_t n, void *all, double timeout_s, char *err,
                       size_t errlen) {
    return blocks(0, mine, n, all, timeout_s, err, errlen);
}

int comm_mpi_alltoall(const void *send, size_t n, void *recv, double timeout_s, char *err,
                      size_t errlen) {
    return blocks(1, send, n, recv, timeout_s, err, errlen);
}

int comm_mpi_bcast(void *buf, size_t n, int root, double timeout_s, char *err, size_t errlen) {
    const double deadline = tmr_now() + timeout_s;
    for (size_t o = 0; o < n; o += g_limit) {
        const size_t k = n - o < g_limit ? n - o : g_limit;
        MPI_Request req;
        int rc = MPI_Ibcast((char *)buf + o, (int)k, MPI_BYTE, root, MPI_COMM_WORLD, &req);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Ibcast", err, errlen);
        if (wait_for(&req, deadline, timeout_s, "MPI_Ibcast", err, errlen)) return -1;
    }
    return 0;
}

/* One round of allgatherv: rank r's bytes [o, o + k_r) of its counts[r], k_r at most the
 * limit, gathered in rank order into tmp, then copied to all + displs[r] + o. Direct into all
 * when the whole transfer is one round whose displacements fit an int. */
int comm_mpi_allgatherv(const void *mine, const size_t *counts, const size_t *displs, void *all,
                        double timeout_s, char *err, size_t errlen) {
    const double deadline = tmr_now() + timeout_s;
    size_t most = 0, total = 0;
    for (int r = 0; r < g_size; r++) {
        most = counts[r] > most ? counts[r] : most;
        total += counts[r];
    }
    /* each round's total must fit an int displacement too */
    const size_t fit = (size_t)INT_MAX / (size_t)g_size, step = g_limit < fit ? g_limit : fit;
    const int direct = total <= step;
    int *k = tmr_malloc((size_t)g_size * sizeof *k), *at = tmr_malloc((size_t)g_size * sizeof *at);
    char *tmp = direct ? NULL : tmr_malloc(tmr_mul_size((size_t)g_size, step));
    int rc = 0;
    for (size_t o = 0; o < most; o += step) {
        size_t sum = 0;
        for (int r = 0; r < g_size; r++) {
            const size_t left = counts[r] > o ? counts[r] - o : 0;
            k[r] = (int)(left < step ? left : step);
            at[r] = direct ? (int)displs[r] : (int)sum;
            sum += (size_t)k[r];
        }
        const char *src = k[g_rank] ? (const char *)mine + o : mine;
        MPI_Request req;
        rc = MPI_Iallgatherv(src, k[g_rank], MPI_BYTE, direct ? all : tmp, k, at, MPI_BYTE,
                             MPI_COMM_WORLD, &req);
        const char *call = "MPI_Iallgatherv";
        rc = rc != MPI_SUCCESS ? mpi_fail(rc, call, err, errlen)
                               : wait_for(&req, deadline, timeout_s, call, err, errlen);
        if (rc) break;
        for (int r = 0; r < g_size && !direct; r++)
            if (k[r]) memcpy((char *)all + displs[r] + o, tmp + at[r], (size_t)k[r]);
    }
    free(k);
    free(at);
    free(tmp);
    return rc;
}
