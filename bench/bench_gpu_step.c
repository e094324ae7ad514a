/* Training-step throughput of the CUDA backend at the reference's shapes (batch 256, history
 * 20, emb 64, attn 8, K 2, one negative: C = 2; finetune n_layers 2, temp 0.5), both stages:
 * gpu_train_step + gpu_adam_step timed with CUDA events, median of the timed steps after a
 * warm-up, as samples/s; the CPU step + adam_step on the same batches on this machine's cores
 * for comparison (host clock); and evaluation: gpu_eval_scores of batches of 256 users with
 * 1,001 candidates (the dev/test protocol).
 *
 * Batches are synthetic with MovieLens-1M's catalogue (3,706 items, N = 3,707): most training
 * instances of ML-1M have a full history of 20 (users average 165 ratings), so 9 rows in 10
 * have length 20 and the others 1..20; items uniform. Before timing, one step on each backend
 * from the same weights must agree (loss within 1e-4), else the numbers are not reported.
 *
 * Extrapolated (not measured over a real epoch): epoch_s = 988,129 (ML-1M's training
 * instances) / samples_per_s; eval_ms = the median batch time x ceil(6,040 / 256) batches.
 * Appends rows to bench/results/epoch.csv. SKIP without a GPU. */
#include "bench_util.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timirec/common.h"
#include "timirec/cpu_ops.h"
#include "timirec/model.h"
#include "timirec/rng.h"
#ifdef TIMIREC_CUDA
#include "timirec/gpu.h"
#include "timirec/gpu_ops.h"
#endif

#ifndef TIMIREC_CUDA
int main(void) {
    printf("SKIP: built without CUDA (no nvcc)\n");
    return 0;
}
#else

enum { B = 256, L = 20, C_TRAIN = 2, C_EVAL = 1001, N_ITEMS = 3707, N_BATCHES = 8 };
enum { WARMUP = 10, TIMED = 60, CPU_WARMUP = 2, CPU_TIMED = 10, EVAL_TIMED = 20 };
#define ML1M_TRAIN_INSTANCES 988129.0
#define ML1M_EVAL_USERS 6040

typedef struct {
    int32_t hist[B * L], pos[B * L], length[B], cand[B * C_EVAL];
} host_batch_t;

static void make_batch(host_batch_t *hb, uint32_t tag, int C) {
    for (int b = 0; b < B; b++) {
        int len = b % 10 ? L : 1 + (int)(rng_u32(9, RNG_TEST, tag, (uint64_t)b, 0) % L);
        hb->length[b] = len;
        for (int l = 0; l < L; l++) {
            int r = b * L + l;
            hb->hist[r] = l < len ? 1 + (int)(rng_u32(9, RNG_TEST, tag + 1, (uint64_t)r, 0) % (N_ITEMS - 1)) : 0;
            hb->pos[r] = l < len ? len - l : 0;
        }
        for (int c = 0; c < C; c++)
            hb->cand[b * C + c] = 1 + (int)(rng_u32(9, RNG_TEST, tag + 2, (uint64_t)(b * C + c), 0) % (N_ITEMS - 1));
    }
}

static model_batch_t as_batch(const host_batch_t *hb, int C) {
    model_batch_t mb = {B, L, C, hb->hist, hb->pos, hb->length, hb->cand, 0, 0};
    return mb;
}

int main(void) {
    char desc[512], err[512];
    if (gpu_device_count(desc, sizeof desc) < 1) {
        printf("SKIP: %s\n", desc);
        return 0;
    }
    char device[512];
    snprintf(device, sizeof device, "%s", desc);
    device[strcspn(device, "(")] = 0; /* the driver's name, as bench_gpu_epoch writes it */
    for (size_t k = strlen(device); k > 0 && device[k - 1] == ' ';) device[--k] = 0;
    for (char *p = device; *p; p++)
        if (*p == ',') *p = ';';
    char cpu_name[256];
    bench_cpu_name(cpu_name, sizeof cpu_name);
    const char *commit = bench_commit(), *date = bench_date();
    const char *path = "bench/results/epoch.csv";
    FILE *probe = fopen(path, "r");
    const int fresh = probe == NULL;
    if (probe) fclose(probe);
    FILE *csv = fopen(path, "a");
    if (!csv) perror(path);
    if (csv && fresh)
        fprintf(csv, "device,date,commit,dataset,stage,backend,batch_size,history_max,K,epoch_s,"
                     "samples_per_s,eval_ms\n");

    static host_batch_t batches[N_BATCHES], eval_batch;
    for (int i = 0; i < N_BATCHES; i++) make_batch(&batches[i], 10u * (uint32_t)i, C_TRAIN);
    make_batch(&eval_batch, 1000, C_EVAL);
    printf("GPU training step on %s; batch %d, history %d, emb 64, K 2, C %d; N %d items\n", desc,
           B, L, C_TRAIN, N_ITEMS);
    printf("%-9s %-5s %12s %12s %12s %12s\n", "stage", "back", "step ms", "samples/s",
           "epoch s*", "eval ms*");
    int status = 0;
    for (int stage = STAGE_PRETRAIN; stage <= STAGE_FINETUNE; stage++) {
        const char *stage_name = stage == STAGE_PRETRAIN ? "pretrain" : "finetune";
        model_config_t cfg = {.stage = stage, .n_items = N_ITEMS, .emb_size = 64, .attn_size = 8,
                              .K = 2, .history_max = L, .add_pos = 1, .add_trm = 1,
                              .n_layers = stage == STAGE_FINETUNE ? 2 : 1,
                              .temp = stage == STAGE_FINETUNE ? 0.5 : 1.0, .dropout = 0.5};
        model_layout_t lay;
        model_layout_build(&cfg, &lay);
        const size_t n = (size_t)lay.total;
        float *params = tmr_malloc(n * sizeof(float)), *grads = tmr_calloc(n, sizeof(float));
        float *m = tmr_calloc(n, sizeof(float)), *v = tmr_calloc(n, sizeof(float));
        model_init_params(&lay, 1, params);
        gpu_model_t *g = gpu_model_create(&lay, params, B, L, C_EVAL, err, sizeof err);
        if (!g) {
            printf("SKIP: %s\n", err);
            return 0;
        }
        model_ws_t_f ws;
        model_ws_alloc_f(&ws, &lay, B, L, C_EVAL);
        adam_t cpu_adam, gpu_adam;
        adam_init(&cpu_adam, 1e-3, 1e-6);
        adam_init(&gpu_adam, 1e-3, 1e-6);

        /* Validate before timing: the first step from the same weights. */
        model_batch_t mb0 = as_batch(&batches[0], C_TRAIN);
        dropout_key_t key0 = {1, 0};
        const float lc = model_train_step_f(&lay, params, &mb0, key0, &ws, grads);
        const float lg = gpu_train_step(g, &mb0, key0);
        const double rel = fabs((double)lg - lc) / fabs((double)lc);
        printf("%-9s check: first-step loss gpu %.7f cpu %.7f (rel %.1e)\n", stage_name, lg, lc, rel);
        if (!(rel <= 1e-4)) {
            fprintf(stderr, "bench_gpu_step: %s: GPU and CPU disagree; not timing\n", stage_name);
            status = 1;
            gpu_model_free(g);
            model_ws_free_f(&ws);
            free(params), free(grads), free(m), free(v);
            continue;
        }

        /* GPU: warm-up, then each step timed on its own (events around train step + Adam). */
        gpu_timer_t *timer = gpu_timer_create();
        double ms[TIMED > EVAL_TIMED ? TIMED : EVAL_TIMED];
        for (int s = 0; s < WARMUP + TIMED; s++) {
            model_batch_t mb = as_batch(&batches[s % N_BATCHES], C_TRAIN);
            dropout_key_t key = {1, (uint32_t)s};
            gpu_timer_start(timer);
            gpu_train_step(g, &mb, key);
            gpu_adam_step(g, &gpu_adam);
            const float t = gpu_timer_stop_ms(timer);
            if (s >= WARMUP) ms[s - WARMUP] = t;
        }
        const double gpu_ms = bench_median(ms, TIMED);
        model_batch_t eb = as_batch(&eval_batch, C_EVAL);
        float *scores = tmr_malloc((size_t)B * C_EVAL * sizeof(float));
        for (int s = 0; s < 3 + EVAL_TIMED; s++) {
            gpu_timer_start(timer);
            gpu_eval_scores(g, &eb, scores);
            const float t = gpu_timer_stop_ms(timer);
            if (s >= 3) ms[s - 3] = t;
        }
        const double eval_batch_ms = bench_median(ms, EVAL_TIMED);
        const double eval_ms = eval_batch_ms * ((ML1M_EVAL_USERS + B - 1) / B);
        gpu_timer_free(timer);

        /* CPU: the same batches, host clock. */
        double cms[CPU_TIMED];
        for (int s = 0; s < CPU_WARMUP + CPU_TIMED; s++) {
            model_batch_t mb = as_batch(&batches[s % N_BATCHES], C_TRAIN);
            dropout_key_t key = {1, (uint32_t)s};
            const double t0 = tmr_now();
            memset(grads, 0, n * sizeof(float));
            model_train_step_f(&lay, params, &mb, key, &ws, grads);
            adam_step(&cpu_adam, &lay, params, grads, m, v);
            if (s >= CPU_WARMUP) cms[s - CPU_WARMUP] = (tmr_now() - t0) * 1e3;
        }
        const double cpu_ms = bench_median(cms, CPU_TIMED);
        double t0 = tmr_now();
        model_eval_scores_f(&lay, params, &eb, &ws);
        const double cpu_eval_ms = (tmr_now() - t0) * 1e3 * ((ML1M_EVAL_USERS + B - 1) / B);

        const double gpu_sps = B / (gpu_ms * 1e-3), cpu_sps = B / (cpu_ms * 1e-3);
        printf("%-9s %-5s %12.3f %12.0f %12.2f %12.1f\n", stage_name, "cuda", gpu_ms, gpu_sps,
               ML1M_TRAIN_INSTANCES / gpu_sps, eval_ms);
        printf("%-9s %-5s %12.3f %12.0f %12.2f %12.1f\n", stage_name, "cpu", cpu_ms, cpu_sps,
               ML1M_TRAIN_INSTANCES / cpu_sps, cpu_eval_ms);
        if (csv) {
            fprintf(csv, "%s,%s,%s,ml-1m-shape synthetic,%s,cuda,%d,%d,%d,%.2f,%.0f,%.1f\n", device,
                    date ? date : "", commit ? commit : "", stage_name, B, L, cfg.K,
                    ML1M_TRAIN_INSTANCES / gpu_sps, gpu_sps, eval_ms);
            fprintf(csv, "%s,%s,%s,ml-1m-shape synthetic,%s,cpu,%d,%d,%d,%.2f,%.0f,%.1f\n",
                    cpu_name, date ? date : "", commit ? commit : "", stage_name, B, L, cfg.K,
                    ML1M_TRAIN_INSTANCES / cpu_sps, cpu_sps, cpu_eval_ms);
        }
        gpu_model_free(g);
        model_ws_free_f(&ws);
        free(params), free(grads), free(m), free(v), free(scores);
    }
    printf("* extrapolated: epoch = 988,129 ML-1M training instances / samples/s; eval = median "
           "batch x ceil(6,040 / 256) batches of 1,001 candidates\n");
    if (csv) fclose(csv);
    return status;
}
#endif
