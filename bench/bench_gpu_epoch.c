/* Whole-epoch throughput at MovieLens-1M scale (issue 6): the synthetic dataset of bench_data
 * (6,040 users, 3,706 items, 1,000,209 interactions, at least 20 a user; dev/test with 1,000
 * negatives, i.e. 1,001 candidates), the reference's ml-1m settings (emb 64, K 2, add_pos,
 * add_trm, history_max 20, batch 256; finetune: temp 0.5, n_layers 2), trained from scratch.
 *
 * GPU (SKIP without one): for each setting, one warm-up epoch, then --epochs timed epochs
 * through the backend's epoch driver (gpu_train_epoch: device negatives, shuffle and batches,
 * losses summed on the device; pretrain steps replayed from CUDA graphs) and dev evaluation
 * through gpu_eval_phase (median of 5); at the default setting also, one epoch each, the
 * alternatives: the per-step path (host batches, one synchronisation per step), host-built
 * batches staged through pinned memory (TIMIREC_GPU_EPOCH=staged), and pretrain without
 * graphs (TIMIREC_GPU_GRAPHS=0). Settings: the default (both stages), history_max 200 with K 16 (batch 256), and
 * batch sizes 1,024 / 4,096 / 8,192 (history 20, K 2). Printed: epoch seconds, samples/s,
 * dev ms, the host's share (preparing the epoch; queueing the steps: when queueing takes as
 * long as the epoch, launches are the bottleneck, not the device), and achieved GFLOP/s
 * against the FP32 ceiling measured by bench_device (bench/results/device.csv).
 *
 * Without a GPU, a build against the emulated backend runs the GPU path on a small dataset
 * (TIMIREC_BENCH_EMULATED=1, --dir, --scale 0): how this program is checked off-GPU.
 *
 * CPU: the default setting, the first --cpu_batches batches of an epoch timed and scaled to
 * the whole epoch (labelled "cpu (N of M batches scaled)"), and one dev evaluation.
 *
 * Goal: finetune epoch <= 0.5 s, pretrain epoch <= 0.3 s, dev evaluation <= 10 ms on one
 * H100-class GPU. Every measured row is appended to bench/results/epoch.csv:
 * device,date,commit,dataset,stage,backend,batch_size,history_max,K,epoch_s,samples_per_s,eval_ms
 *
 * FLOPs (multiply-add = 2), counted analytically per batch of B instances, padded length L,
 * real history items R (sum of lengths), C candidates, d = emb 64, a = attn 8, dff = d:
 *   extractor forward   F_ext = B L (6 d^2 + 4 d dff + 2 d a + 2 a K + 2 K d) + 4 B L^2 d
 *                       (q/k/v, FFN, interest attention, interests; scores and context)
 *   pretrain heads      F_pre = B (2 K d + 2 C d)                 (k* by the target, scores)
 *   finetune heads      F_fin = B (2 K d + 2 C d + 2 K d)         (u, scores, target intent)
 *                             + 12 R d^2                          (GRU: two 3d x d products)
 *                             + B ((n_layers - 1) 2 d^2 + 2 d K)  (projection)
 *   training step = 3 x forward (the backward's products are twice the forward's), plus Adam's
 *   ~12 flops per parameter; evaluation = forward only with C = 1,001.
 * Element-wise work (softmax, LayerNorm, gathers, scatter) is not counted: it is memory-bound,
 * so the achieved FLOP/s is a lower bound on how busy the device was. */
#include "bench_util.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "timirec/common.h"
#include "timirec/corpus.h"
#include "timirec/options.h"
#include "timirec/prepare.h"
#include "timirec/trainer.h"
#ifdef TIMIREC_CUDA
#include "timirec/backend.h"
#include "timirec/gpu.h"
#include "timirec/gpu_data.h"
#include "timirec/gpu_ops.h"
#endif

typedef struct {
    int stage, batch, hist, K;
} setting_t;

static void make_cfg(const setting_t *s, model_config_t *cfg, train_opts_t *o) {
    memset(cfg, 0, sizeof *cfg);
    cfg->stage = s->stage;
    cfg->emb_size = 64;
    cfg->attn_size = 8;
    cfg->K = s->K;
    cfg->add_pos = 1;
    cfg->add_trm = 1;
    cfg->n_layers = s->stage == STAGE_FINETUNE ? 2 : 1;
    cfg->temp = s->stage == STAGE_FINETUNE ? 0.5 : 1.0;
    cfg->dropout = 0.5;
    train_opts_default(o);
    o->batch_size = s->batch;
    o->eval_batch_size = 256;
    o->history_max = s->hist;
    o->lr = 1e-4;
    o->l2 = 1e-6;
}

/* Forward FLOPs of the batch of instances inst[0..B) of phase (formula above). */
static double forward_flops(const corpus_t *c, const model_config_t *cfg, int phase,
                            const int64_t *inst, int64_t start, int B, int hist, int C) {
    const double d = cfg->emb_size, a = cfg->attn_size, K = cfg->K, dff = d;
    const corpus_phase_t *ph = &c->phase[phase];
    int L = 0;
    double R = 0;
    for (int i = 0; i < B; i++) {
        const int64_t r = ph->inst_row[inst ? inst[start + i] : start + i];
        const int32_t *items;
        const int len = corpus_history(c, ph->user[r], ph->position[r], hist, &items);
        if (len > L) L = len;
        R += len;
    }
    double f = B * (double)L * (6 * d * d + 4 * d * dff + 2 * d * a + 2 * a * K + 2 * K * d) +
               4.0 * B * (double)L * L * d;
    if (cfg->stage == STAGE_PRETRAIN) f += B * (2 * K * d + 2 * C * d);
    else
        f += B * (4 * K * d + 2 * C * d) + 12 * R * d * d +
             B * ((cfg->n_layers - 1) * 2 * d * d + 2 * d * K);
    return f;
}

/* FLOPs of a training epoch in the epoch's shuffled order (the padded lengths depend on it)
 * and of evaluating the dev phase in batches of eval_batch. */
static double epoch_flops(const corpus_t *c, const model_config_t *cfg, int bs, int hist,
                          int64_t n_params, uint64_t seed, uint32_t epoch) {
    const int64_t n = c->phase[PHASE_TRAIN].n_inst;
    int64_t *order = malloc((size_t)(n + 1) * sizeof(int64_t));
    if (!order) return 0;
    sampler_shuffle(n, seed, epoch, order);
    double f = 0;
    for (int64_t s = 0; s < n; s += bs) {
        const int B = (int)(n - s < bs ? n - s : bs);
        f += 3 * forward_flops(c, cfg, PHASE_TRAIN, order, s, B, hist, 2) + 12.0 * (double)n_params;
    }
    free(order);
    return f;
}
static double eval_flops(const corpus_t *c, const model_config_t *cfg, int eb, int hist) {
    const int64_t n = c->phase[PHASE_DEV].n_inst;
    double f = 0;
    for (int64_t s = 0; s < n; s += eb) {
        const int B = (int)(n - s < eb ? n - s : eb);
        f += forward_flops(c, cfg, PHASE_DEV, NULL, s, B, hist, 1 + c->phase[PHASE_DEV].n_neg);
    }
    return f;
}

/* The FP32 ceiling (TFLOP/s) bench_device measured for this device; 0 when none. */
static double fp32_ceiling(const char *device) { return bench_device_ceiling(device, "fp32_peak_tflops"); }

static FILE *open_csv(const char *path) {
    if (!path || !*path) return NULL;
    FILE *probe = fopen(path, "r");
    const int fresh = probe == NULL;
    if (probe) fclose(probe);
    FILE *csv = fopen(path, "a");
    if (!csv) {
        perror(path);
        return NULL;
    }
    if (fresh)
        fprintf(csv, "device,date,commit,dataset,stage,backend,batch_size,history_max,K,epoch_s,"
                     "samples_per_s,eval_ms\n");
    return csv;
}

static const char *commit_id(void) { return bench_commit(); }
static void iso_date(char *out, size_t n) { snprintf(out, n, "%s", bench_date()); }

static const char *stage_name(int s) { return s == STAGE_PRETRAIN ? "pretrain" : "finetune"; }

int main(int argc, char **argv) {
    const char *dir = "data/bench-ml1m", *csv_path = "bench/results/epoch.csv";
    int64_t epochs = 2, cpu_batches = 100, scale = 1, per_step = 1, gpu_only = 0;
    opt_t table[] = {
        {"dir", OPT_STR, &dir, 0, 0, "dataset folder (generated when missing, as bench_data)"},
        {"epochs", OPT_INT, &epochs, 1, 100, "timed GPU epochs per setting (median reported)"},
        {"cpu_batches", OPT_INT, &cpu_batches, 0, 1000000,
         "CPU: batches timed and scaled to the epoch (0: no CPU rows)"},
        {"scale", OPT_INT, &scale, 0, 1, "GPU: also history 200 x K 16 and batch 1024..8192"},
        {"per_step", OPT_INT, &per_step, 0, 1, "GPU: also the per-step path at the default"},
        {"gpu_only", OPT_INT, &gpu_only, 0, 1, "skip the CPU rows"},
        {"csv", OPT_STR, &csv_path, 0, 0, "results file to append to (empty: none)"},
    };
    const int n_opts = (int)(sizeof table / sizeof table[0]);
    char err[2048];
    int rc = options_parse(table, n_opts, argc, argv, 1, NULL, 0, NULL, err, sizeof err);
    if (rc) {
        if (rc < 0) fprintf(stderr, "bench_gpu_epoch: %s\n", err);
        options_usage("usage: bench_gpu_epoch [options]", table, n_opts, rc < 0 ? stderr : stdout);
        return rc < 0 ? 2 : 0;
    }
    if (getenv("TIMIREC_BENCH_QUICK")) {
        epochs = 1;
        cpu_batches = cpu_batches > 20 ? 20 : cpu_batches;
        scale = 0;
    }
    char train_path[1024];
    snprintf(train_path, sizeof train_path, "%s/train.csv", dir);
    if (access(train_path, R_OK) != 0) {
        if (bench_write_ml1m_synth(dir, err, sizeof err)) {
            fprintf(stderr, "bench_gpu_epoch: generating %s: %s\n", dir, err);
            return 1;
        }
    }
    corpus_t c;
    corpus_opts_t co = {.path = dir, .dataset = "", .sep = '\t'};
    if (corpus_load(&co, &c, err, sizeof err)) {
        fprintf(stderr, "bench_gpu_epoch: %s\n", err);
        return 1;
    }
    const int64_t n_train = c.phase[PHASE_TRAIN].n_inst;
    printf("%s: %d users, %d items, %lld training instances, %lld dev x %d "
           "candidates\n", dir, c.n_users - 1, c.n_items - 1, (long long)n_train,
           (long long)c.phase[PHASE_DEV].n_inst, 1 + c.phase[PHASE_DEV].n_neg);
    char date[32];
    iso_date(date, sizeof date);
    FILE *csv = open_csv(csv_path);
    metric_spec_t spec;
    metrics_parse("NDCG,HR", "5", &spec, err, sizeof err);
    const char *dataset = strcmp(dir, "data/bench-ml1m") == 0 ? "synthetic-ml1m" : dir;
    int status = 0;

#ifdef TIMIREC_CUDA
    char desc[512];
    /* The emulated backend (a build against build/emu) only runs when asked, on a small
     * --dir: TIMIREC_BENCH_EMULATED=1 checks this program's GPU path without a GPU. */
    if (gpu_device_count(desc, sizeof desc) < 1 ||
        (gpu_is_emulated() && !getenv("TIMIREC_BENCH_EMULATED"))) {
        printf("SKIP GPU: %s\n", desc);
    } else {
        char device[512];
        snprintf(device, sizeof device, "%s", desc);
        device[strcspn(device, "(")] = 0; /* "NVIDIA H200 " : the driver's name */
        for (size_t k = strlen(device); k > 0 && device[k - 1] == ' ';) device[--k] = 0;
        for (char *p = device; *p; p++)
            if (*p == ',') *p = ';';
        const double ceiling = fp32_ceiling(device);
        printf("GPU: %s; FP32 ceiling %s\n", desc, ceiling > 0 ? "" : "unknown (no device.csv row)");
        if (ceiling > 0) printf("  (bench_device: %.2f TFLOP/s)\n", ceiling);
        printf("%-9s %6s %5s %3s %-10s %9s %11s %8s %8s %8s %9s %6s\n", "stage", "batch", "hist",
               "K", "path", "epoch s", "samples/s", "dev ms", "prep s", "queue s", "GFLOP/s",
               "%peak");
        setting_t settings[16];
        int n_set = 0;
        for (int st = STAGE_PRETRAIN; st <= STAGE_FINETUNE; st++)
            settings[n_set++] = (setting_t){st, 256, 20, 2};
        if (scale) {
            for (int st = STAGE_PRETRAIN; st <= STAGE_FINETUNE; st++)
                settings[n_set++] = (setting_t){st, 256, 200, 16};
            const int sizes[3] = {1024, 4096, 8192};
            for (int k = 0; k < 3; k++)
                for (int st = STAGE_PRETRAIN; st <= STAGE_FINETUNE; st++)
                    settings[n_set++] = (setting_t){st, sizes[k], 20, 2};
        }
        for (int si = 0; si < n_set; si++) {
            const setting_t *s = &settings[si];
            model_config_t cfg;
            train_opts_t o;
            make_cfg(s, &cfg, &o);
            o.use_gpu = 1;
            trainer_t t;
            if (trainer_init(&t, &c, &cfg, &o, err, sizeof err) || !trainer_gpu_model(&t)) {
                printf("FAIL %s batch %d: %s\n", stage_name(s->stage), s->batch,
                       trainer_gpu_model(&t) ? err : t.backend);
                status = 1;
                continue;
            }
            gpu_model_t *g = trainer_gpu_model(&t);
            gpu_data_t *d = gpu_data_create(&c, o.history_max, o.num_neg);
            gpu_model_upload_params(g, t.params);
            double times[100], prep[100], queue[100];
            int64_t replays = 0;
            int ok = 1;
            for (int ep = 0; ep <= epochs; ep++) { /* epoch 0: warm-up */
                gpu_epoch_t e;
                memset(&e, 0, sizeof e);
                e.seed = o.seed;
                e.epoch = (uint32_t)ep;
                e.batch_size = o.batch_size;
                e.step = t.step;
                gpu_sync();
                const double t0 = tmr_now();
                if (gpu_train_epoch(g, d, &t.adam, &e, err, sizeof err)) {
                    printf("FAIL %s: %s\n", stage_name(s->stage), err);
                    ok = 0;
                    break;
                }
                const double dt = tmr_now() - t0; /* gpu_train_epoch returns after the device */
                t.step = e.step;
                if (e.bad_batch >= 0 || !isfinite(e.loss_sum)) {
                    printf("FAIL %s: non-finite loss at batch %lld\n", stage_name(s->stage),
                           (long long)e.bad_batch);
                    ok = 0;
                    break;
                }
                if (ep > 0) {
                    replays = e.graph_replays;
                    times[ep - 1] = dt;
                    prep[ep - 1] = e.prepare_s;
                    queue[ep - 1] = e.queue_s;
                }
            }
            if (!ok) {
                status = 1;
                gpu_data_free(d);
                trainer_free(&t);
                continue;
            }
            const double epoch_s = bench_median(times, (int)epochs);
            const double prep_s = bench_median(prep, (int)epochs);
            const double queue_s = bench_median(queue, (int)epochs);
            int64_t *ranks = malloc((size_t)c.phase[PHASE_DEV].n_inst * sizeof(int64_t));
            double ev[6];
            for (int r = 0; r < 6; r++) { /* 0: warm-up */
                gpu_sync();
                const double t0 = tmr_now();
                gpu_eval_phase(g, d, PHASE_DEV, o.eval_batch_size, ranks);
                if (r > 0) ev[r - 1] = tmr_now() - t0;
            }
            const double eval_ms = 1e3 * bench_median(ev, 5);
            free(ranks);
            const double flops =
                epoch_flops(&c, &cfg, o.batch_size, o.history_max, t.lay.total, o.seed, 1);
            const double gflops = flops / epoch_s / 1e9;
            printf("%-9s %6d %5d %3d %-10s %9.3f %11.0f %8.2f %8.3f %8.3f %9.1f %5.1f%%\n",
                   stage_name(s->stage), s->batch, s->hist, s->K, "device", epoch_s,
                   n_train / epoch_s, eval_ms, prep_s, queue_s, gflops,
                   ceiling > 0 ? 100 * gflops / (ceiling * 1e3) : 0.0);
            if (replays > 0)
                printf("  %lld of %lld steps replayed from CUDA graphs\n", (long long)replays,
                       (long long)((n_train + o.batch_size - 1) / o.batch_size));
            if (si < 2)
                printf("  dev evaluation: %.1f GFLOP/s (%d batches of %d)\n",
                       eval_flops(&c, &cfg, o.eval_batch_size, o.history_max) / (eval_ms * 1e-3) / 1e9,
                       (int)((c.phase[PHASE_DEV].n_inst + o.eval_batch_size - 1) / o.eval_batch_size),
                       o.eval_batch_size);
            if (csv)
                fprintf(csv, "%s,%s,%s,%s,%s,cuda,%d,%d,%d,%.4f,%.0f,%.2f\n", device, date,
                        commit_id(), dataset, stage_name(s->stage), s->batch, s->hist, s->K,
                        epoch_s, n_train / epoch_s, eval_ms);
            double best_s = epoch_s;
            const char *best = "device (TIMIREC_GPU_EPOCH=device)";
            if (per_step && si < 2) { /* the alternatives, same model, one epoch each */
                const char *labels[3] = {"per-step", "staged", "no-graphs"};
                const char *backend[3] = {"cuda-per-step", "cuda-staged", "cuda-no-graphs"};
                for (int alt = 0; alt < 3; alt++) {
                    if (alt == 2 && s->stage != STAGE_PRETRAIN) continue; /* graphs: pretrain */
                    double dt = 0;
                    const uint32_t ep = (uint32_t)(epochs + 1 + alt);
                    gpu_sync();
                    const double t0 = tmr_now();
                    int failed = 0;
                    if (alt < 2) { /* through the trainer: host negatives and shuffle included */
                        setenv("TIMIREC_GPU_EPOCH", alt == 0 ? "0" : "staged", 1);
                        int64_t samples;
                        failed = trainer_epoch(&t, &c, ep, &samples, err, sizeof err) < 0;
                        unsetenv("TIMIREC_GPU_EPOCH");
                    } else {
                        setenv("TIMIREC_GPU_GRAPHS", "0", 1);
                        gpu_model_upload_params(g, t.params);
                        gpu_epoch_t e;
                        memset(&e, 0, sizeof e);
                        e.seed = o.seed;
                        e.epoch = ep;
                        e.batch_size = o.batch_size;
                        e.step = t.step;
                        failed = gpu_train_epoch(g, d, &t.adam, &e, err, sizeof err) != 0 ||
                                 e.bad_batch >= 0;
                        t.step = e.step;
                        unsetenv("TIMIREC_GPU_GRAPHS");
                    }
                    dt = tmr_now() - t0;
                    if (failed) {
                        printf("FAIL %s epoch: %s\n", labels[alt], err);
                        status = 1;
                        continue;
                    }
                    if (alt < 2 && dt < best_s) {
                        best_s = dt;
                        best = alt == 0 ? "per-step (TIMIREC_GPU_EPOCH=0)"
                                        : "staged (TIMIREC_GPU_EPOCH=staged)";
                    }
                    printf("%-9s %6d %5d %3d %-10s %9.3f %11.0f %8s %8s %8s %9.1f\n",
                           stage_name(s->stage), s->batch, s->hist, s->K, labels[alt], dt,
                           n_train / dt, "", "", "", flops / dt / 1e9);
                    if (csv)
                        fprintf(csv, "%s,%s,%s,%s,%s,%s,%d,%d,%d,%.4f,%.0f,\n", device, date,
                                commit_id(), dataset, stage_name(s->stage), backend[alt],
                                s->batch, s->hist, s->K, dt, n_train / dt);
                }
            }
            if (per_step && si < 2)
                printf("  fastest %s epoch: %s (trainer.c GPU_EPOCH_DEFAULT)\n",
                       stage_name(s->stage), best);
            gpu_data_free(d);
            trainer_free(&t);
        }
        printf("goal: pretrain epoch <= 0.3 s, finetune epoch <= 0.5 s, dev evaluation <= 10 ms\n");
    }
#else
    printf("SKIP GPU: built without CUDA (no nvcc)\n");
#endif

    if (!gpu_only && cpu_batches > 0) {
        char cpu_name[256];
        bench_cpu_name(cpu_name, sizeof cpu_name);
        for (int st = STAGE_PRETRAIN; st <= STAGE_FINETUNE; st++) {
            const setting_t s = {st, 256, 20, 2};
            model_config_t cfg;
            train_opts_t o;
            make_cfg(&s, &cfg, &o);
            trainer_t t;
            if (trainer_init(&t, &c, &cfg, &o, err, sizeof err)) {
                printf("FAIL cpu: %s\n", err);
                status = 1;
                continue;
            }
            const int64_t n_batches = (n_train + o.batch_size - 1) / o.batch_size;
            const int64_t k = cpu_batches < n_batches ? cpu_batches : n_batches;
            t.test_stop_after = k;
            epoch_cursor_t cur = {0, 0, 0, 0};
            const double t0 = tmr_now();
            rc = trainer_train_epoch(&t, &c, 0, &cur, err, sizeof err);
            const double dt = tmr_now() - t0;
            if (rc != TRAIN_DONE && rc != TRAIN_INTERRUPTED) {
                printf("FAIL cpu epoch: %s\n", err);
                status = 1;
                trainer_free(&t);
                continue;
            }
            /* the first batches' mean time for the whole epoch (negatives and shuffle are
             * counted once, in dt, so this slightly overstates the epoch) */
            const double epoch_s = dt * (double)n_batches / (double)cur.batch;
            double values[2];
            const double t1 = tmr_now();
            trainer_evaluate(&t, &c, PHASE_DEV, 0, &spec, values);
            const double eval_ms = 1e3 * (tmr_now() - t1);
            char backend[96];
            int threads = 1;
#ifdef _OPENMP
            threads = omp_get_max_threads();
#endif
            snprintf(backend, sizeof backend, "cpu %d threads (%lld of %lld batches scaled)",
                     threads, (long long)cur.batch, (long long)n_batches);
            printf("%-9s %6d %5d %3d %-10s %9.3f %11.0f %8.1f  [%s: %s]\n", stage_name(st), 256,
                   20, 2, "cpu", epoch_s, n_train / epoch_s, eval_ms, backend, cpu_name);
            if (csv)
                fprintf(csv, "%s,%s,%s,%s,%s,%s,%d,%d,%d,%.3f,%.0f,%.1f\n", cpu_name, date,
                        commit_id(), dataset, stage_name(st), backend, 256, 20, 2, epoch_s,
                        n_train / epoch_s, eval_ms);
            trainer_free(&t);
        }
    }
    if (csv) fclose(csv);
    corpus_free(&c);
    return status;
}
