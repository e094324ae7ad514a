/* Block-cooperative kernels (tests/coop_kernels.cu: shared memory and __syncthreads, warp
 * shuffles and votes, a tiled transpose on a 2-D grid, a __shfl_up_sync scan, dynamic shared
 * memory, 3-D blocks, atomics) against plain C loops on random inputs. On a GPU
 * (test_gpu_coop) it checks the kernels; in the host emulation (test_emu_coop) it checks the
 * emulation itself (emu/emulate.h, emu/emulate.cpp): the same kernels must give the same
 * results, once in launch order and once more in a child process with TMR_EMU_REVERSE=1, a
 * deliberate race must change its result with the order, and misuse (a barrier some threads
 * skip, divergent barriers, a shuffle with an exited or missing lane, a deadlock) must abort
 * with a message naming it, each in a child process. SKIP without CUDA or a GPU. */
#include "test_util.h"

#ifndef TIMIREC_CUDA
int main(void) {
    printf("SKIP: built without CUDA (no nvcc)\n");
    return TU_SKIP;
}
#else
#include <stdint.h>

#include "coop_kernels.h"
#include "timirec/gpu_ops.h"
#include "timirec/rng.h"

/* Uniform in [lo, hi) from Philox (RNG_TEST, epoch = tag, index = element). */
static void fill(float *x, int n, uint32_t tag, float lo, float hi) {
    for (int i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * rng_uniform01(rng_u32(91, RNG_TEST, tag, (uint64_t)i, 0));
}
static int rand_int(uint32_t tag, int i, int lo, int hi) {
    return lo + (int)(rng_u32(91, RNG_TEST, tag, (uint64_t)i, 0) % (uint32_t)(hi - lo + 1));
}
static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

static void check_block_sum(int n, int threads) {
    const int blocks = (n + 2 * threads - 1) / (2 * threads);
    float *x = xmalloc((size_t)n * sizeof *x), *sums = xmalloc((size_t)blocks * sizeof *sums);
    int *pos = xmalloc((size_t)blocks * sizeof *pos);
    fill(x, n, 1, -1, 1);
    CHECK(coop_block_sum(x, n, threads, sums, pos) == 0, "coop_block_sum failed");
    int bad = 0;
    for (int b = 0; b < blocks; b++) {
        double want = 0, mag = 0;
        int count = 0;
        for (int i = b * 2 * threads; i < (b + 1) * 2 * threads && i < n; i++) {
            want += x[i];
            mag += fabs(x[i]);
            count += x[i] > 0;
        }
        if (!(fabs(sums[b] - want) <= 1e-6 * mag) || pos[b] != count) {
            if (bad++ < 5)
                fprintf(stderr, "block sum %d: got %g (%d positive), want %g (%d)\n", b,
                        (double)sums[b], pos[b], want, count);
        }
    }
    CHECK(bad == 0, "block sum (n %d, %d threads): %d of %d blocks wrong", n, threads, bad, blocks);
    printf("block sum, n %d, %d threads: %d blocks\n", n, threads, blocks);
    free(x), free(sums), free(pos);
}

static void check_warp_reduce(void) {
    enum { n = 256, warps = n / 32 };
    float x[n], sums[n], mx[warps];
    unsigned ballots[warps];
    int any[warps], all[warps];
    fill(x, n, 2, -1, 1);
    fill(x + 64, 32, 3, -1, 0.4f);    /* warp 2: no value above 0.5 */
    fill(x + 96, 32, 4, -0.8f, 1);    /* warp 3: every value above -0.9 */
    CHECK(coop_warp_reduce(x, n, sums, mx, ballots, any, all) == 0, "coop_warp_reduce failed");
    int bad = 0;
    for (int w = 0; w < warps; w++) {
        double want = 0, mag = 0;
        float want_max = x[w * 32];
        unsigned want_ballot = 0;
        int want_any = 0, want_all = 1;
        for (int l = 0; l < 32; l++) {
            const float v = x[w * 32 + l];
            want += v;
            mag += fabs(v);
            if (v > want_max) want_max = v;
            if (v > 0) want_ballot |= 1u << l;
            want_any |= v > 0.5f;
            want_all &= v > -0.9f;
        }
        for (int l = 0; l < 32; l++)
            if (!(fabs(sums[w * 32 + l] - want) <= 1e-6 * mag)) bad++;
        bad += mx[w] != want_max;
        bad += ballots[w] != want_ballot;
        bad += any[w] != want_any;
        bad += all[w] != want_all;
        if (w == 2) CHECK(!want_any, "test data: warp 2 should have no value above 0.5");
        if (w == 3) CHECK(want_all, "test data: warp 3 should be all above -0.9");
    }
    CHECK(bad == 0, "warp shuffles and votes: %d wrong values", bad);
    printf("warp reduce (xor sum, down max, ballot, any, all): %d warps\n", warps);
}

static void check_transpose(int rows, int cols) {
    float *in = xmalloc((size_t)rows * cols * sizeof *in), *out = xmalloc((size_t)rows * cols * sizeof *out);
    fill(in, rows * cols, 5, -1, 1);
    CHECK(coop_transpose(in, rows, cols, out) == 0, "coop_transpose failed");
    int bad = 0;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) bad += out[(size_t)c * rows + r] != in[(size_t)r * cols + c];
    CHECK(bad == 0, "transpose %d x %d: %d wrong elements", rows, cols, bad);
    printf("transpose %d x %d\n", rows, cols);
    free(in), free(out);
}

static void check_scan(int n) {
    int *x = xmalloc((size_t)n * sizeof *x), *out = xmalloc((size_t)n * sizeof *out);
    for (int i = 0; i < n; i++) x[i] = rand_int(6, i, -50, 50);
    CHECK(coop_block_scan(x, n, out) == 0, "coop_block_scan failed");
    int bad = 0, run = 0;
    for (int i = 0; i < n; i++) {
        run = (i % 256 == 0 ? 0 : run) + x[i];
        if (out[i] != run && bad++ < 5) fprintf(stderr, "scan %d: got %d want %d\n", i, out[i], run);
    }
    CHECK(bad == 0, "block scan n %d: %d wrong", n, bad);
    printf("block scan, n %d\n", n);
    free(x), free(out);
}

static void check_softmax(int rows, int cols, int threads) {
    float *x = xmalloc((size_t)rows * cols * sizeof *x), *out = xmalloc((size_t)rows * cols * sizeof *out);
    fill(x, rows * cols, 7, -4, 4);
    CHECK(coop_softmax_rows(x, rows, cols, threads, out) == 0, "coop_softmax_rows failed");
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * cols;
        double mx = xr[0], sum = 0;
        for (int c = 1; c < cols; c++) mx = xr[c] > mx ? xr[c] : mx;
        for (int c = 0; c < cols; c++) sum += exp(xr[c] - mx);
        for (int c = 0; c < cols; c++) {
            const double want = exp(xr[c] - mx) / sum, got = out[(size_t)r * cols + c];
            const double err = fabs(got - want) / want;
            tu_max_err(&worst, err);
        }
    }
    /* float exp (the GPU's __expf: a few ulps) and float sums against double. */
    CHECK(worst <= 2e-5, "softmax %d x %d, %d threads: worst relative error %g", rows, cols,
          threads, worst);
    printf("softmax with dynamic shared memory %d x %d, %d threads: worst relative error %.2g\n",
           rows, cols, threads, worst);
    free(x), free(out);
}

static void check_reverse_3d(int blocks) {
    float *x = xmalloc((size_t)blocks * 64 * sizeof *x), *out = xmalloc((size_t)blocks * 64 * sizeof *out);
    fill(x, blocks * 64, 8, -1, 1);
    CHECK(coop_reverse_3d(x, blocks, out) == 0, "coop_reverse_3d failed");
    int bad = 0;
    for (int b = 0; b < blocks; b++)
        for (int t = 0; t < 64; t++) bad += out[b * 64 + t] != x[b * 64 + 63 - t];
    CHECK(bad == 0, "3-D blocks: %d wrong", bad);
    printf("3-D blocks (4,4,4): %d blocks\n", blocks);
    free(x), free(out);
}

static void check_half_block_shuffle(int blocks) {
    float *x = xmalloc((size_t)blocks * 64 * sizeof *x), *out = xmalloc((size_t)blocks * 64 * sizeof *out);
    fill(x, blocks * 64, 9, -1, 1);
    CHECK(coop_half_block_shuffle(x, blocks, out) == 0, "coop_half_block_shuffle failed");
    int bad = 0;
    for (int i = 0; i < blocks * 64; i++) bad += out[i] != (i % 64 >= 32 ? x[i ^ 1] : x[i]);
    CHECK(bad == 0, "shuffle in one warp of the block: %d wrong", bad);
    printf("shuffle in warp 1 only: %d blocks\n", blocks);
    free(x), free(out);
}

static void check_atomics(int n, int bins) {
    int *keys = xmalloc((size_t)n * sizeof *keys), *hist = xmalloc((size_t)bins * sizeof *hist);
    int *want = calloc((size_t)bins, sizeof *want);
    float *x = xmalloc((size_t)n * sizeof *x), total = 0;
    double want_total = 0, mag = 0;
    for (int i = 0; i < n; i++) {
        keys[i] = rand_int(10, i, 0, bins - 1);
        want[keys[i]]++;
    }
    fill(x, n, 11, -1, 1);
    for (int i = 0; i < n; i++) want_total += x[i], mag += fabs(x[i]);
    CHECK(coop_atomics(keys, x, n, bins, hist, &total) == 0, "coop_atomics failed");
    int bad = 0;
    for (int k = 0; k < bins; k++) bad += hist[k] != want[k];
    CHECK(bad == 0, "atomicAdd histogram: %d bins wrong", bad);
    /* Float additions in whatever order the device applies them. */
    CHECK(fabs(total - want_total) <= 1e-5 * mag, "atomicAdd total %g, want %g", (double)total,
          want_total);
    printf("atomics: %d values, %d bins\n", n, bins);
    free(keys), free(hist), free(want), free(x);
}

/* In the emulation the race's outcome follows the order: launch order 2 x[t-1], reverse
 * x[t-1]. */
static void check_race_follows_order(int reverse) {
    enum { n = 256 };
    float x[n], out[n];
    fill(x, n, 12, 0.5f, 1);
    CHECK(coop_racy_neighbour(x, n, out) == 0, "coop_racy_neighbour failed");
    int bad = 0;
    for (int t = 1; t < n; t++) bad += out[t] != (reverse ? x[t - 1] : 2.0f * x[t - 1]);
    CHECK(bad == 0, "the race after a barrier should read %s values (%s order): %d differ",
          reverse ? "not yet doubled" : "doubled", reverse ? "reverse" : "launch", bad);
    printf("race after a barrier follows the %s order\n", reverse ? "reverse" : "launch");
}

/* Runs fn in a child process; it must not finish normally, and its stderr must name the
 * problem (both substrings). */
static int call_coop(void *fn) { return ((int (*)(void))fn)() == 0 ? 0 : 3; }
static void check_reported(const char *name, int (*fn)(void), const char *want1, const char *want2) {
    char msg[8192];
    const int status = tu_run_child(call_coop, (void *)fn, msg, sizeof msg);
    if (status < 0) {
        perror("fork");
        exit(1);
    }
    const int finished = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    CHECK(!finished, "%s: the emulation ran it to the end without reporting it", name);
    CHECK(strstr(msg, want1) && strstr(msg, want2), "%s: the report does not name '%s' and '%s': %s",
          name, want1, want2, msg);
    const char *first = strstr(msg, "emulated");
    printf("%s reported: %.*s\n", name, first ? (int)strcspn(first, "\n") : 0, first ? first : "");
}

static void run_checks(int emulated, int reverse) {
    check_block_sum(1000, 32);
    check_block_sum(5000, 256);
    check_block_sum(3000, 1024);
    check_warp_reduce();
    check_transpose(70, 45);
    check_transpose(32, 96);
    check_scan(1000);
    check_softmax(7, 100, 64);
    check_softmax(3, 1000, 256);
    check_softmax(5, 20, 32);
    check_reverse_3d(3);
    check_half_block_shuffle(3);
    check_atomics(5000, 17);
    if (!emulated) return;
    check_race_follows_order(reverse);
    check_reported("early return before __syncthreads", coop_bad_early_return, "__syncthreads",
                   "every thread of the block must reach every barrier");
    check_reported("two different __syncthreads", coop_bad_two_barriers, "divergent barriers",
                   "coop_kernels.cu");
    check_reported("shuffle with an exited lane", coop_bad_shuffle_exited, "__shfl_xor_sync",
                   "returned");
    check_reported("full mask in a 16-lane warp", coop_bad_missing_lane, "__shfl_down_sync",
                   "does not exist");
    check_reported("lane at a barrier, others at a shuffle", coop_bad_deadlock, "deadlock",
                   "__syncthreads");
}

int main(void) {
    char desc[512];
    if (gpu_device_count(desc, sizeof desc) < 1) {
        printf("SKIP: %s\n", desc);
        return TU_SKIP;
    }
    const int emulated = gpu_is_emulated();
    const char *r = getenv("TMR_EMU_REVERSE");
    const int reverse = emulated && r && r[0] == '1';
    printf("test_gpu_coop on %s%s\n", desc, reverse ? " (TMR_EMU_REVERSE=1)" : "");
    run_checks(emulated, reverse);
    if (emulated && !reverse) {
        /* Again with blocks, threads and fibers in reverse order. */
        printf("--- again with TMR_EMU_REVERSE=1\n");
        fflush(stdout);
        fflush(stderr);
        const pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            setenv("TMR_EMU_REVERSE", "1", 1);
            run_checks(1, 1);
            fflush(stdout);
            _exit(tu_failures ? 1 : 0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the reverse-order run failed");
    }
    return tu_finish("test_gpu_coop");
}
#endif
