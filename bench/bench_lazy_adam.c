/* The optimiser step alone on a large catalog: dense Adam (adam_step) against LazyAdam
 * (adam_step_lazy) on the finetune layout (both item tables), for one batch of random ids.
 *   build/bench/bench_lazy_adam [--items 1708530] [--emb_size 64] [--batch_size 256]
 *                               [--history_max 20] [--reps 5]
 * Prints the median wall time of each step, the bytes dense Adam moves per step, and what
 * zeroing the whole gradient buffer costs (the CPU backend does it before every Adam step). Taobao
 * (ComiRec) has 1,708,530 items: 2 x 1.7M x 64 table elements, ~3.5 GB of parameters,
 * gradients and moments. */
#include "bench_util.h"
#include "timirec/model.h"
#include "timirec/options.h"

#include <omp.h>
#include <stdint.h>

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    tmr_flush_subnormals(); /* as the training step does */
    int64_t items = 1708530, emb = 64, B = 256, L = 20, reps = 5;
    opt_t table[] = {
        {"items", OPT_INT, &items, 2, 100000000, "items in the catalog"},
        {"emb_size", OPT_INT, &emb, 4, 256, "embedding size"},
        {"batch_size", OPT_INT, &B, 1, 1 << 20, "batch size"},
        {"history_max", OPT_INT, &L, 1, 512, "history length"},
        {"reps", OPT_INT, &reps, 1, 1000, "timed steps of each (the median is printed)"},
    };
    const int n_opts = (int)(sizeof table / sizeof *table);
    char err[512];
    int rc = options_parse(table, n_opts, argc, argv, 1, NULL, 0, NULL, err, sizeof err);
    if (rc) {
        if (rc < 0) fprintf(stderr, "bench_lazy_adam: %s\n", err);
        options_usage("usage: bench_lazy_adam [options]", table, n_opts, rc < 0 ? stderr : stdout);
        return rc < 0 ? 2 : 0;
    }
    model_config_t cfg = {.stage = STAGE_FINETUNE, .n_items = (int)items, .emb_size = (int)emb,
                          .attn_size = 8, .K = 2, .history_max = (int)L, .add_pos = 1,
                          .add_trm = 1, .n_layers = 1, .temp = 1, .dropout = 0.5};
    if (model_config_check(&cfg, err, sizeof err)) tmr_fatal("bench_lazy_adam: %s", err);
    model_layout_t lay;
    model_layout_build(&cfg, &lay);
    const size_t n = (size_t)lay.total;
    float *p = tmr_malloc(n * sizeof(float)), *g = tmr_malloc(n * sizeof(float));
    float *m = tmr_calloc(n, sizeof(float)), *v = tmr_calloc(n, sizeof(float));
    int64_t *rows = tmr_calloc((size_t)adam_lazy_rows(&lay), sizeof(int64_t));
    model_init_params(&lay, 1, p);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) g[i] = 1e-3f * (float)((i * 2654435761u) % 2001) - 1.0f;
    const int C = 2;
    int32_t *hist = tmr_malloc((size_t)(B * L) * sizeof(int32_t));
    int32_t *pos = tmr_calloc((size_t)(B * L), sizeof(int32_t));
    int32_t *len = tmr_malloc((size_t)B * sizeof(int32_t));
    int32_t *cand = tmr_malloc((size_t)(B * C) * sizeof(int32_t));
    uint64_t s = 42;
    for (int64_t i = 0; i < B * L; i++) hist[i] = 1 + (int32_t)((s = s * 6364136223846793005ULL + 1) >> 33) % (int32_t)(items - 1);
    for (int64_t i = 0; i < B * C; i++) cand[i] = 1 + (int32_t)((s = s * 6364136223846793005ULL + 1) >> 33) % (int32_t)(items - 1);
    for (int64_t b = 0; b < B; b++) len[b] = (int32_t)L;
    const model_batch_t mb = {(int)B, (int)L, C, hist, pos, len, cand, 0, 0};
    adam_t dense, lazy;
    adam_init(&dense, 1e-3, 1e-6);
    adam_init(&lazy, 1e-3, 1e-6);
    double *td = tmr_malloc((size_t)reps * sizeof(double)), *tl = tmr_malloc((size_t)reps * sizeof(double));
    double *tz = tmr_malloc((size_t)reps * sizeof(double));
    adam_step(&dense, &lay, p, g, m, v); /* warm: pages touched */
    for (int64_t r = 0; r < reps; r++) {
        double t0 = tmr_now();
        adam_step(&dense, &lay, p, g, m, v);
        td[r] = tmr_now() - t0;
        t0 = tmr_now();
        adam_step_lazy(&lazy, &lay, &mb, p, g, m, v, rows);
        tl[r] = tmr_now() - t0;
        t0 = tmr_now(); /* what zeroing the gradients costs with Adam (LazyAdam: a step's rows) */
        memset(g, 0, n * sizeof(float));
        tz[r] = tmr_now() - t0;
    }
    qsort(td, (size_t)reps, sizeof *td, cmp_d);
    qsort(tl, (size_t)reps, sizeof *tl, cmp_d);
    qsort(tz, (size_t)reps, sizeof *tz, cmp_d);
    printf("bench_lazy_adam: %lld items, d %lld, %lld parameters, %d threads, batch %lld x %lld\n",
           (long long)items, (long long)emb, (long long)lay.total, omp_get_max_threads(),
           (long long)B, (long long)L);
    printf("Adam step      %10.3f ms (median of %lld; %.2f GB moved: %.1f GB/s)\n",
           1e3 * td[reps / 2], (long long)reps, 28.0 * (double)n / 1e9,
           28.0 * (double)n / 1e9 / td[reps / 2]);
    printf("LazyAdam step  %10.3f ms (median of %lld; dense tensors + touched rows)\n",
           1e3 * tl[reps / 2], (long long)reps);
    free(p), free(g), free(m), free(v), free(rows), free(hist), free(pos), free(len), free(cand);
    printf("zero all grads %10.3f ms (the CPU step's memset with Adam; LazyAdam clears only the\n"
           "                             dense tensors and the rows the last step wrote)\n",
           1e3 * tz[reps / 2]);
    free(td), free(tl), free(tz);
    return 0;
}
