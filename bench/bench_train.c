/* End to end on the CPU: training throughput (forward + backward + Adam, samples/s) and epoch
 * time of both stages on ml-100k with the reference's defaults (emb 64, attn 8, K 2, history
 * 20, batch 256, add_pos, add_trm; finetune n_layers 2, temp 0.5 as in the published ml-1m run),
 * with one thread and with all cores; and, apart from training, the data loading time (parse +
 * index) and the dev evaluation time, with dev HR@5/NDCG@5 after the timed epoch. The reference
 * framework trains about 1,500 samples/s on one core of this machine in the pretrain stage; the
 * goal is 10x that on 2 cores. GPU rows say SKIP until the CUDA backend exists.
 * TIMIREC_BENCH_QUICK=1: all cores only. Appends rows to bench/results/train_cpu.csv. */
#include "timirec/common.h"
#include "timirec/corpus.h"
#include "timirec/gemm.h"
#include "timirec/metrics.h"
#include "timirec/options.h"
#include "timirec/trainer.h"
#include "bench_util.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *path = "../shared/data", *dataset = "ml-100k", *csv = "bench/results/train_cpu.csv";
    int64_t epochs = 1;
    opt_t table[] = {
        {"path", OPT_STR, &path, 0, 0, "folder holding the dataset folder"},
        {"dataset", OPT_STR, &dataset, 0, 0, "dataset"},
        {"epochs", OPT_INT, &epochs, 1, 1000, "timed epochs per setting"},
        {"csv", OPT_STR, &csv, 0, 0, "results file to append to (empty: none)"},
    };
    const char *quick_env = getenv("TIMIREC_BENCH_QUICK");
    int quick = quick_env && *quick_env && strcmp(quick_env, "0") != 0;
    int n_opts = (int)(sizeof table / sizeof table[0]);
    char err[2048];
    int rc = options_parse(table, n_opts, argc, argv, 1, NULL, 0, NULL, err, sizeof err);
    if (rc) {
        if (rc < 0) fprintf(stderr, "bench_train: %s\n", err);
        options_usage("usage: bench_train [options]", table, n_opts, rc < 0 ? stderr : stdout);
        return rc < 0 ? 2 : 0;
    }
    char probe[1024];
    snprintf(probe, sizeof probe, "%s/%s/train.csv", path, dataset);
    if (access(probe, R_OK) != 0) {
        printf("SKIP: %s not found\n", probe);
        return 0;
    }
    corpus_t c;
    corpus_opts_t co = {.path = path, .dataset = dataset, .sep = '\t'};
    double t_load = tmr_now();
    if (corpus_load(&co, &c, err, sizeof err)) {
        fprintf(stderr, "bench_train: %s\n", err);
        return 1;
    }
    t_load = tmr_now() - t_load;
    metric_spec_t spec;
    metrics_parse("HR,NDCG", "5", &spec, err, sizeof err);
    char device[256];
    bench_cpu_name(device, sizeof device);
    const char *commit = bench_commit(), *date = bench_date();
    FILE *out = csv && *csv ? fopen(csv, "a") : NULL;
    if (out && ftell(out) == 0)
        fprintf(out, "device,date,commit,dataset,stage,threads,gemm,epoch_s,samples_per_s,"
                     "dev_hr5,dev_ndcg5,load_s,dev_eval_s\n");
    int all = omp_get_max_threads();
    printf("CPU training on %s, %s (%lld training instances, %lld dev), %s matrix product\n",
           dataset, device, (long long)c.phase[PHASE_TRAIN].n_inst,
           (long long)c.phase[PHASE_DEV].n_inst, tmr_gemm_name(tmr_gemm_current()));
    printf("data loading (parse + index): %.3f s\n", t_load);
    printf("%-9s %-4s %7s %10s %12s %10s %8s %8s\n", "stage", "dev", "threads", "epoch s",
           "samples/s", "dev eval s", "HR@5", "NDCG@5");
    for (int stage = STAGE_PRETRAIN; stage <= STAGE_FINETUNE; stage++) {
        for (int threads = quick ? all : 1; threads <= all; threads = threads == all ? all + 1 : all) {
            omp_set_num_threads(threads);
            model_config_t cfg = {.stage = stage, .emb_size = 64, .attn_size = 8, .K = 2,
                                  .add_pos = 1, .add_trm = 1,
                                  .n_layers = stage == STAGE_FINETUNE ? 2 : 1,
                                  .temp = stage == STAGE_FINETUNE ? 0.5 : 1.0, .dropout = 0.5};
            train_opts_t o;
            train_opts_default(&o);
            trainer_t t;
            if (trainer_init(&t, &c, &cfg, &o, err, sizeof err)) {
                fprintf(stderr, "bench_train: %s\n", err);
                return 1;
            }
            double secs = 0, loss = 0;
            int64_t samples = 0;
            for (int e = 0; e < epochs; e++) {
                int64_t n;
                double t0 = tmr_now();
                loss = trainer_epoch(&t, &c, (uint32_t)e, &n, err, sizeof err);
                secs += tmr_now() - t0;
                samples += n;
            }
            double v[2];
            double t_eval = tmr_now();
            trainer_evaluate(&t, &c, PHASE_DEV, 0, &spec, v);
            t_eval = tmr_now() - t_eval;
            double sps = (double)samples / secs;
            printf("%-9s %-4s %7d %10.2f %12.0f %10.3f %8.4f %8.4f   (loss %.4f)\n",
                   stage == STAGE_PRETRAIN ? "pretrain" : "finetune", "cpu", threads,
                   secs / (double)epochs, sps, t_eval, v[0], v[1], loss);
            if (out)
                fprintf(out, "%s,%s,%s,%s,%s,%d,%s,%.3f,%.0f,%.4f,%.4f,%.3f,%.4f\n", device,
                        date ? date : "", commit ? commit : "", dataset,
                        stage == STAGE_PRETRAIN ? "pretrain" : "finetune", threads,
                        tmr_gemm_name(tmr_gemm_current()), secs / (double)epochs, sps, v[0], v[1],
                        t_load, t_eval);
            trainer_free(&t);
        }
        printf("%-9s %-4s %7s %10s %12s %10s   SKIP (GPU epochs: build/bench/bench_gpu_epoch)\n",
               stage == STAGE_PRETRAIN ? "pretrain" : "finetune", "gpu", "-", "-", "-", "-");
    }
    if (out) fclose(out);
    omp_set_num_threads(all);
    corpus_free(&c);
    return 0;
}
