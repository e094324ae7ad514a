/* The collectives of comm.h, bit for bit, on however many ranks this runs as: 1 process (plain
 * start, `make test`), or `mpirun -np 2` / `-np 3` (tests/cli_comm.sh). Every input is seeded
 * by (rank, purpose, index), random and never zero, so each rank computes every rank's input
 * and the rank-order reference itself; every result must equal the reference exactly and be
 * the same bits on every rank (gathered and compared).
 *   test_comm               the checks
 *   test_comm --mpi-built   exit 0 when the build has the MPI transport, else 1
 *   test_comm --faults [R]  six sums of 1000 floats ("step 1" .. "step 6"); rank R, if given,
 *                           exits(1) before step 3 (a peer that dies); with
 *                           TIMIREC_TEST_COMM_SKIP a rank skips one (a peer that misbehaves) */
#include "timirec/comm.h"

#include "test_util.h"

#include <stdint.h>

static int g_rank, g_size;

static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t key(int rank, int purpose, int64_t i) {
    return mix(mix(mix((uint64_t)rank + 1) ^ (uint64_t)purpose) ^ (uint64_t)i);
}

/* Nonzero, either sign, magnitudes 2^-8 .. 2^8: the summation order shows in the low bits. */
static double value(int rank, int purpose, int64_t i) {
    const uint64_t u = key(rank, purpose, i);
    const double m = ((double)(u >> 40) + 1.0) / 16777216.0; /* (0, 1] */
    return ldexp(u & 1 ? -m : m, (int)((u >> 1) % 17) - 8);
}

/* All ranks hold the same bytes: every rank's copy gathered and compared with this one. */
static void check_same(comm_t *c, const void *x, size_t bytes, const char *what) {
    int64_t *counts = malloc((size_t)g_size * sizeof *counts);
    void *all = NULL;
    comm_allgather(c, x, 1, bytes, &all, counts, "check_same");
    for (int r = 0; r < g_size; r++)
        CHECK(memcmp((char *)all + (size_t)r * bytes, x, bytes) == 0,
              "%s: rank %d's result differs from rank %d's", what, r, g_rank);
    free(all);
    free(counts);
}

static void test_sums(comm_t *c, int64_t n) {
    float *xf = malloc((size_t)n * sizeof *xf), *rf = malloc((size_t)n * sizeof *rf);
    double *xd = malloc((size_t)n * sizeof *xd), *rd = malloc((size_t)n * sizeof *rd);
    int64_t *xi = malloc((size_t)n * sizeof *xi), *ri = malloc((size_t)n * sizeof *ri);
    for (int64_t i = 0; i < n; i++) {
        xf[i] = (float)value(g_rank, 1, i);
        xd[i] = value(g_rank, 2, i);
        xi[i] = (int64_t)key(g_rank, 3, i);
        rf[i] = (float)value(0, 1, i); /* ((x_0 + x_1) + x_2) + ... */
        rd[i] = value(0, 2, i);
        ri[i] = (int64_t)key(0, 3, i);
        for (int r = 1; r < g_size; r++) {
            rf[i] += (float)value(r, 1, i);
            rd[i] += value(r, 2, i);
            const int64_t v = (int64_t)key(r, 3, i);
            ri[i] = v > ri[i] ? v : ri[i];
        }
    }
    comm_sum_f32(c, xf, n, "sum_f32");
    comm_sum_f64(c, xd, n, "sum_f64");
    comm_max_i64(c, xi, n, "max_i64");
    CHECK(memcmp(xf, rf, (size_t)n * sizeof *xf) == 0, "comm_sum_f32 n=%lld", (long long)n);
    CHECK(memcmp(xd, rd, (size_t)n * sizeof *xd) == 0, "comm_sum_f64 n=%lld", (long long)n);
    CHECK(memcmp(xi, ri, (size_t)n * sizeof *xi) == 0, "comm_max_i64 n=%lld", (long long)n);
    check_same(c, xf, (size_t)n * sizeof *xf, "comm_sum_f32");
    check_same(c, xd, (size_t)n * sizeof *xd, "comm_sum_f64");
    free(xf), free(rf), free(xd), free(rd), free(xi), free(ri);
}

static void test_bcast(comm_t *c, size_t bytes) {
    unsigned char *buf = malloc(bytes);
    for (int root = 0; root < g_size; root++) {
        for (size_t i = 0; i < bytes; i++) buf[i] = (unsigned char)key(g_rank, 4, (int64_t)i);
        comm_bcast(c, buf, bytes, root, "bcast");
        size_t bad = 0;
        for (size_t i = 0; i < bytes; i++) bad += buf[i] != (unsigned char)key(root, 4, (int64_t)i);
        CHECK(bad == 0, "comm_bcast %zu bytes from root %d: %zu bytes differ", bytes, root, bad);
    }
    free(buf);
}

/* Rank r gives count(r) elements of `elem` bytes; byte j of element i is key(r, 5, i elem + j). */
static void test_allgather(comm_t *c, int64_t (*count)(int r), size_t elem) {
    const int64_t n = count(g_rank);
    unsigned char *mine = malloc((size_t)(n > 0 ? n : 1) * elem);
    for (size_t j = 0; j < (size_t)n * elem; j++) mine[j] = (unsigned char)key(g_rank, 5, (int64_t)j);
    int64_t *counts = malloc((size_t)g_size * sizeof *counts);
    void *all = NULL;
    const int64_t total = comm_allgather(c, n > 0 ? mine : NULL, n, elem, &all, counts, "gather");
    int64_t want = 0;
    size_t bad = 0;
    for (int r = 0; r < g_size; r++) {
        CHECK(counts[r] == count(r), "comm_allgather: counts[%d] %lld, want %lld", r,
              (long long)counts[r], (long long)count(r));
        const unsigned char *got = (const unsigned char *)all + (size_t)want * elem;
        for (size_t j = 0; j < (size_t)count(r) * elem; j++)
            bad += got[j] != (unsigned char)key(r, 5, (int64_t)j);
        want += count(r);
    }
    CHECK(total == want, "comm_allgather: total %lld, want %lld", (long long)total, (long long)want);
    CHECK(bad == 0, "comm_allgather elem %zu: %zu bytes differ", elem, bad);
    free(all);
    free(counts);
    free(mine);
}
static int64_t count_a(int r) { return r == 1 ? 0 : 2 * r + 3; }
static int64_t count_b(int r) { return r == 0 ? 0 : 1000 * r + 1; }

/* Row ids 0 .. 39: rank r holds id unless key(r, 6 + none, id) % 3 == 0 (so ranks overlap),
 * in an order shuffled per rank; with `none`, the last rank (of 2 or more) holds nothing. */
enum { N_IDS = 40, D = 5 };
static int holds(int r, int none, int64_t id) {
    if (none && g_size > 1 && r == g_size - 1) return 0;
    return key(r, 6 + none, id) % 3 != 0;
}
static float row_value(int r, int64_t id, int j) { return (float)value(r, 8, id * D + j); }

static void test_sum_rows(comm_t *c, int none) {
    int64_t ids[N_IDS], n = 0;
    float rows[N_IDS * D];
    for (int64_t id = 0; id < N_IDS; id++)
        if (holds(g_rank, none, id)) ids[n++] = id;
    for (int64_t i = n - 1; i > 0; i--) { /* a different order on every rank */
        const int64_t j = (int64_t)(key(g_rank, 9, i) % (uint64_t)(i + 1)), t = ids[i];
        ids[i] = ids[j], ids[j] = t;
    }
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < D; j++) rows[i * D + j] = row_value(g_rank, ids[i], j);
    int64_t ref_ids[N_IDS], u = 0;
    float ref[N_IDS * D];
    for (int64_t id = 0; id < N_IDS; id++) {
        int first = 1;
        for (int r = 0; r < g_size; r++) {
            if (!holds(r, none, id)) continue;
            if (first) ref_ids[u++] = id;
            for (int j = 0; j < D; j++)
                ref[(u - 1) * D + j] = first ? row_value(r, id, j) : ref[(u - 1) * D + j] + row_value(r, id, j);
            first = 0;
        }
    }
    int64_t *got_ids = NULL;
    float *got = NULL;
    const int64_t m = comm_sum_rows(c, n > 0 ? ids : NULL, n > 0 ? rows : NULL, n, D, &got_ids,
                                    &got, "sum_rows");
    CHECK(m == u, "comm_sum_rows (none %d): %lld rows, want %lld", none, (long long)m, (long long)u);
    if (m == u) {
        CHECK(memcmp(got_ids, ref_ids, (size_t)u * sizeof *got_ids) == 0, "comm_sum_rows ids");
        CHECK(memcmp(got, ref, (size_t)u * D * sizeof *got) == 0, "comm_sum_rows (none %d) rows",
              none);
        check_same(c, got, (size_t)u * D * sizeof *got, "comm_sum_rows");
    }
    free(got_ids);
    free(got);
}

/* Six identical sums; rank `exit_rank` dies before the third. */
static int faults(comm_t *c, int exit_rank) {
    float x[1000];
    for (int step = 1; step <= 6; step++) {
        if (g_rank == exit_rank && step == 3) {
            fprintf(stderr, "test_comm: rank %d exits(1) before step 3\n", g_rank);
            exit(1);
        }
        for (int i = 0; i < 1000; i++) x[i] = (float)value(g_rank, 10, i);
        char what[32];
        snprintf(what, sizeof what, "step %d", step);
        comm_sum_f32(c, x, 1000, what);
    }
    comm_finalize(c);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--mpi-built") == 0) return comm_mpi_built() ? 0 : 1;
    comm_t *c = NULL;
    char err[512];
    if (comm_init(&argc, &argv, &c, err, sizeof err)) {
        fprintf(stderr, "test_comm: comm_init: %s\n", err);
        return 1;
    }
    g_rank = comm_rank(c);
    g_size = comm_size(c);
    if (argc > 1 && strcmp(argv[1], "--faults") == 0) return faults(c, argc > 2 ? atoi(argv[2]) : -1);
    if (g_rank == 0) printf("test_comm: %s\n", comm_describe(c));
    const int64_t sizes[] = {1, g_size > 1 ? g_size - 1 : 1, 7, g_size + 1, 1000000, 1000001};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) test_sums(c, sizes[k]);
    const size_t bytes[] = {1, 13, 100003};
    for (size_t k = 0; k < sizeof bytes / sizeof *bytes; k++) test_bcast(c, bytes[k]);
    test_allgather(c, count_a, 12);
    test_allgather(c, count_b, 8);
    test_sum_rows(c, 0);
    test_sum_rows(c, 1);
    const comm_stats_t st = comm_stats(c);
    CHECK(g_size == 1 ? st.calls == 0 : st.calls > 0 && st.bytes_sent > 0,
          "comm_stats: %lld calls, %llu bytes", (long long)st.calls,
          (unsigned long long)st.bytes_sent);
    printf("test_comm: rank %d of %d: %d checks, %d failed\n", g_rank, g_size, tu_checks,
           tu_failures);
    comm_finalize(c);
    return tu_finish("test_comm");
}
