/* Data-parallel training cost (dist.h): launched as one process or under `mpirun -np N`, it
 * trains --batches steps (after --warmup) of one stage on a synthetic dataset of --scale times
 * MovieLens-1M, every rank its slice of each batch of --batch_size, and measures
 *   samples_per_s            global batch rows per second (the slowest rank sets it);
 *   step_ms                  wall time per step;
 *   comm_ms_per_step         time inside collectives per step (rank 0; includes waiting for
 *                            the slower rank);
 *   comm_bytes_per_step      bytes rank 0 sent per step;
 * one row per run into --csv (rank 0 writes). With --project 1, rank 0 also writes rows that
 * project the communication of the same exchange on 8 GPUs from the measured bytes (labelled
 * "projection", no step time: the single-GPU step is measured only where a GPU was lent):
 * ring all-reduce time = 2 (P - 1) / P x the summed bytes / bus bandwidth (NVLink 4 in one
 * 8-GPU node: 450 GB/s; InfiniBand NDR 400 Gb/s between nodes: 50 GB/s). bench/dist_study.sh
 * runs 1 and 2 ranks and the projection. */
#include "timirec/comm.h"
#include "timirec/common.h"
#include "timirec/corpus.h"
#include "timirec/dist.h"
#include "timirec/options.h"
#include "timirec/prepare.h"
#include "timirec/trainer.h"
#include "bench_util.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    double scale;
    int64_t batches, warmup, batch_size, stage, project;
    const char *dir, *optimizer, *csv;
} dist_opts_t;

typedef struct {
    int64_t warmup, batches, seen;
    double t_warm, t_end;
    comm_t *comm;
    comm_stats_t at_warm, at_end;
} clock_t_;

static void on_batch(void *ctx, int64_t done, int64_t total) {
    (void)done, (void)total;
    clock_t_ *k = ctx;
    k->seen++;
    if (k->seen == k->warmup) k->t_warm = tmr_now(), k->at_warm = comm_stats(k->comm);
    if (k->seen == k->warmup + k->batches) k->t_end = tmr_now(), k->at_end = comm_stats(k->comm);
}

static int parse(dist_opts_t *s, int argc, char **argv) {
    *s = (dist_opts_t){.scale = 1, .batches = 100, .warmup = 5, .batch_size = 256, .stage = 1,
                       .dir = "/tmp/timirec_dist", .optimizer = "Adam",
                       .csv = "bench/results/distributed.csv"};
    opt_t table[] = {
        {"scale", OPT_FLOAT, &s->scale, 0.001, 1000, "dataset size in MovieLens-1M units"},
        {"batches", OPT_INT, &s->batches, 1, 1e6, "timed training steps"},
        {"warmup", OPT_INT, &s->warmup, 1, 1e6, "untimed steps first"},
        {"batch_size", OPT_INT, &s->batch_size, 1, 1 << 20, "global batch size"},
        {"stage", OPT_INT, &s->stage, 1, 2, "1 pretrain, 2 finetune"},
        {"optimizer", OPT_STR, &s->optimizer, 0, 0, "Adam or LazyAdam"},
        {"dir", OPT_STR, &s->dir, 0, 0, "where the dataset is written (rank 0)"},
        {"csv", OPT_STR, &s->csv, 0, 0, "results file to append to (empty: none)"},
        {"project", OPT_INT, &s->project, 0, 1, "1: also the 8-GPU projection rows"},
    };
    const int n = (int)(sizeof table / sizeof table[0]);
    char err[1024];
    const int rc = options_parse(table, n, argc, argv, 1, NULL, 0, NULL, err, sizeof err);
    if (rc) {
        if (rc < 0) fprintf(stderr, "bench_dist: %s\n", err);
        options_usage("usage: [mpirun -np N] bench_dist [options]", table, n, rc < 0 ? stderr : stdout);
        return rc < 0 ? 2 : 1;
    }
    return 0;
}

/* Rank 0 writes the dataset (when absent) while the others wait. */
static int dataset(const dist_opts_t *s, comm_t *comm, char *err, size_t errlen) {
    char folder[1200], stamp[1300];
    snprintf(folder, sizeof folder, "%s/dist_%g", s->dir, s->scale);
    snprintf(stamp, sizeof stamp, "%s/written.txt", folder);
    int64_t rc = 0;
    if (comm_rank(comm) == 0 && access(stamp, R_OK) != 0) {
        mkdir(s->dir, 0755);
        synth_opts_t so;
        synth_defaults(&so);
        so.n_users = (int64_t)(6040 * s->scale + 0.5);
        so.n_items = (int64_t)(3706 * s->scale + 0.5);
        so.n_interactions = (int64_t)(1000209 * s->scale + 0.5);
        so.pop_skew = 1;
        rc = synth_write(&so, folder, 0, NULL, err, errlen) ? 1 : 0;
        FILE *f = rc ? NULL : fopen(stamp, "w");
        if (f) fclose(f);
    }
    comm_max_i64(comm, &rc, 1, "dataset written");
    if (rc && comm_rank(comm) != 0) snprintf(err, errlen, "rank 0 could not write the dataset");
    return rc ? -1 : 0;
}

static void append(const dist_opts_t *s, const char *device, const char *transport, int ranks,
                   const char *exchange, double sps, double step_ms, double comm_ms,
                   double bytes) {
    FILE *f = fopen(s->csv, "a");
    if (!f) return;
    if (ftell(f) == 0)
        fprintf(f, "device,date,commit,transport,ranks,threads_per_rank,stage,optimizer,exchange,"
                   "batch_size,samples_per_s,step_ms,comm_ms_per_step,comm_bytes_per_step\n");
    const char *commit = bench_commit(), *date = bench_date();
    char v[4][32];
    snprintf(v[0], 32, sps > 0 ? "%.0f" : "", sps);
    snprintf(v[1], 32, step_ms > 0 ? "%.3f" : "", step_ms);
    snprintf(v[2], 32, "%.3f", comm_ms);
    snprintf(v[3], 32, "%.0f", bytes);
    fprintf(f, "%s,%s,%s,%s,%d,%d,%s,%s,%s,%lld,%s,%s,%s,%s\n", device, date ? date : "",
            commit ? commit : "", transport, ranks, omp_get_max_threads(),
            s->stage == 1 ? "pretrain" : "finetune", s->optimizer, exchange,
            (long long)s->batch_size, v[0], v[1], v[2], v[3]);
    fclose(f);
}

/* The 8-GPU projection from the bytes rank 0 sent per step among P ranks. Dense: an ordered
 * sum of a vector V sends 2 (P - 1) / P V per rank, so V = bytes P / (2 (P - 1)) and 8 ranks
 * send 2 x 7/8 V. Rows: an all-gather sends this rank's touched rows R to P - 1 ranks, and a
 * rank's slice (so R, roughly) shrinks as 1/P: 8 ranks send 7 R P / 8 (the dense tensors'
 * small sum counted in R). */
static void project(const dist_opts_t *s, const char *exchange, int P, double bytes) {
    const struct { const char *what; double gbps; } links[] = {
        {"projection: 8x H100 in one node over NVLink 4 (450 GB/s bus)", 450},
        {"projection: 8 nodes x 1 H100 over InfiniBand NDR (50 GB/s)", 50},
    };
    const double b8 = strcmp(exchange, "rows") == 0
                          ? 7.0 * bytes / (P - 1) * P / 8
                          : 2.0 * 7 / 8 * bytes * P / (2.0 * (P - 1));
    for (int i = 0; i < 2; i++) {
        const double ms = b8 / (links[i].gbps * 1e9) * 1e3;
        append(s, links[i].what, "NCCL (projected)", 8, exchange, 0, 0, ms, b8);
        printf("  %s: %.3f ms of communication per step (%.3g MB per rank)\n", links[i].what,
               ms, b8 / 1e6);
    }
}

int main(int argc, char **argv) {
    dist_opts_t s;
    int rc = parse(&s, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    comm_t *comm;
    char err[2048];
    if (comm_init(&argc, &argv, &comm, err, sizeof err)) {
        fprintf(stderr, "bench_dist: %s\n", err);
        return 1;
    }
    const int rank = comm_rank(comm), P = comm_size(comm);
    if (dataset(&s, comm, err, sizeof err)) comm_abort(comm, 1, "%s", err);
    char name[64];
    snprintf(name, sizeof name, "dist_%g", s.scale); /* one folder per size */
    corpus_opts_t co = {.path = s.dir, .dataset = name, .sep = '\t', .cache = CORPUS_CACHE_OFF};
    corpus_t c;
    if (corpus_load(&co, &c, err, sizeof err)) comm_abort(comm, 1, "%s", err);
    const int stage = s.stage == 1 ? STAGE_PRETRAIN : STAGE_FINETUNE;
    model_config_t cfg = {.stage = stage, .emb_size = 64, .attn_size = 8, .K = 2, .add_pos = 1,
                          .add_trm = 1, .n_layers = stage == STAGE_FINETUNE ? 2 : 1,
                          .temp = stage == STAGE_FINETUNE ? 0.5 : 1.0, .dropout = 0.5};
    train_opts_t o;
    train_opts_default(&o);
    o.batch_size = (int)s.batch_size;
    o.lazy_adam = strcmp(s.optimizer, "LazyAdam") == 0;
    trainer_t t;
    if (trainer_init(&t, &c, &cfg, &o, err, sizeof err)) comm_abort(comm, 1, "%s", err);
    char why[256];
    dist_attach(&t, comm, why, sizeof why);
    if (P == 1) snprintf(why, sizeof why, "none (one process)");
    clock_t_ k = {s.warmup, s.batches, 0, 0, 0, comm, {0, 0, 0}, {0, 0, 0}};
    t.progress = on_batch;
    t.progress_ctx = &k;
    t.test_stop_after = s.warmup + s.batches;
    epoch_cursor_t cur = {0, 0, 0, 0};
    rc = trainer_train_epoch(&t, &c, 0, &cur, err, sizeof err);
    if (rc == TRAIN_ERROR || rc == TRAIN_NONFINITE) comm_abort(comm, 1, "%s", err);
    if (k.seen < s.warmup + s.batches) comm_abort(comm, 1, "the epoch is shorter than the steps");
    const double secs = k.t_end - k.t_warm, steps = (double)s.batches;
    const double sps = steps * (double)s.batch_size / secs, step_ms = secs / steps * 1e3;
    const double comm_ms = (k.at_end.seconds - k.at_warm.seconds) / steps * 1e3;
    const double bytes = (double)(k.at_end.bytes_sent - k.at_warm.bytes_sent) / steps;
    const char *exchange = P == 1 ? "none" : t.exchange == DIST_EXCHANGE_ROWS ? "rows" : "dense";
    if (rank == 0) {
        printf("bench_dist: %s, %s, batch %lld, %s, %d thread(s) a rank\n", comm_describe(comm),
               stage == STAGE_PRETRAIN ? "pretrain" : "finetune", (long long)s.batch_size,
               s.optimizer, omp_get_max_threads());
        printf("  gradient exchange: %s\n", why);
        printf("  %.0f samples/s, %.2f ms a step, of which %.3f ms in collectives, %.3g MB sent "
               "a step by rank 0\n", sps, step_ms, comm_ms, bytes / 1e6);
        char device[256];
        bench_cpu_name(device, sizeof device);
        if (s.csv && *s.csv) {
            append(&s, device, P == 1 ? "none" : "MPI", P, exchange, sps, step_ms, comm_ms, bytes);
            if (s.project && P > 1) project(&s, exchange, P, bytes);
        }
    }
    trainer_free(&t);
    corpus_free(&c);
    comm_finalize(comm);
    return 0;
}
