/* How cost grows with the dataset: one synthetic dataset of `--scale` times MovieLens-1M
 * (6,040 users, 3,706 items, 1,000,209 interactions each; or explicit --users/--items/
 * --interactions, e.g. Taobao's 976,779 / 1,708,530 / 85,384,110), long-tailed popularity
 * (Zipf exponent 1), no dev/test negatives (evaluation is full-catalog). Measures, in order:
 *   synth_s        writing the CSVs (synth_write, streaming);
 *   load_s         the first load: parse + index + write the binary cache, in a child process
 *                  whose peak RSS is load_peak_rss_mb;
 *   cache_load_s   the next load: map + validate the cache (the corpus the rest uses);
 *   samples/s      per stage, --batches steps after --warmup (forward, backward, optimiser;
 *                  LazyAdam by default: the dense rule touches every item row every step),
 *                  the epoch's negatives and shuffle excluded (epoch_prep_s, per stage);
 *   eval_s         full-catalog top-K ranking of the test instances of --eval_users users
 *                  (seeded sample), per stage;
 *   peak_rss_mb    this process's peak (the cached corpus, both trainers, evaluation).
 * One scale per process, so each peak is its own; bench/scale_study.sh runs 1x, 10x, 100x and
 * Taobao size and draws the growth plot. `make bench` runs the default (1x, a few seconds).
 * Appends a row to --csv.
 * --gpu 1: the same sizes on the CUDA backend (device 0: tables, optimiser state and the epoch
 * on the device; samples/s from its epoch driver's per-batch progress; the full-catalog ranking
 * stays the host's blocked top-K, as trainer_evaluate does). Without a usable GPU the row is
 * written at once, its device column "not run: <why>" and no numbers. */
#include "timirec/common.h"
#include "timirec/corpus.h"
#include "timirec/cuda.h"
#include "timirec/metrics.h"
#include "timirec/options.h"
#include "timirec/prepare.h"
#include "timirec/trainer.h"
#include "bench_util.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    double scale;
    int64_t users, items, interactions, batches, warmup, eval_users, batch_size, history_max;
    int64_t reuse, keep, load_only, gpu;
    const char *dir, *optimizer, *csv;
} scale_opts_t;

/* Timestamps of the steps a stage times (trainer_t.progress: after every batch). */
typedef struct {
    int64_t batch_size, warmup, batches, seen;
    double t_first, t_warm, t_end;
} step_clock_t;

static void on_batch(void *ctx, int64_t done, int64_t total) {
    (void)done;
    (void)total;
    step_clock_t *k = ctx;
    const double now = tmr_now();
    k->seen++;
    if (k->seen == 1) k->t_first = now;
    if (k->seen == k->warmup) k->t_warm = now;
    if (k->seen == k->warmup + k->batches) k->t_end = now;
}

static double peak_rss_mb(int who) {
    struct rusage ru;
    getrusage(who, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

/* --load_only: parse, index and write the cache, then exit (the child first_load runs). */
static int load_only(const corpus_opts_t *co) {
    corpus_opts_t o = *co;
    o.cache = CORPUS_CACHE_REBUILD;
    corpus_t c;
    char e[1024];
    if (corpus_load(&o, &c, e, sizeof e)) {
        fprintf(stderr, "bench_scale: %s\n", e);
        return 1;
    }
    printf("  %s\n", c.cache_note);
    corpus_free(&c);
    return 0;
}

/* The first load in a child process (its own peak RSS): this binary again with --load_only
 * (exec, not a bare fork: OpenMP's thread pool does not survive a fork). */
static int first_load(const char *dir, double *secs, double *rss_mb, char *err, size_t errlen) {
    const double t0 = tmr_now();
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return tmr_error(err, errlen, "fork failed");
    if (pid == 0) {
        char *args[] = {"bench_scale", "--load_only", "1", "--dir", (char *)dir, "--csv", "",
                        NULL};
        execv("/proc/self/exe", args);
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return tmr_error(err, errlen, "the first load failed");
    *secs = tmr_now() - t0;
    *rss_mb = (double)ru.ru_maxrss / 1024.0;
    return 0;
}

/* Train `warmup + batches` steps of epoch 0 of one stage and rank the test instances of the
 * sampled users. Returns 0 or -1 with a message (also when --gpu 1 found no GPU: the trainer
 * fell back to the CPU). */
static int run_stage(const scale_opts_t *s, const corpus_t *c, int stage, double *sps,
                     double *prep_s, double *eval_s, char *err, size_t errlen) {
    model_config_t cfg = {.stage = stage, .emb_size = 64, .attn_size = 8, .K = 2, .add_pos = 1,
                          .add_trm = 1, .n_layers = stage == STAGE_FINETUNE ? 2 : 1,
                          .temp = stage == STAGE_FINETUNE ? 0.5 : 1.0, .dropout = 0.5};
    train_opts_t o;
    train_opts_default(&o);
    o.batch_size = (int)s->batch_size;
    o.eval_batch_size = (int)s->batch_size;
    o.history_max = (int)s->history_max;
    o.lazy_adam = strcmp(s->optimizer, "LazyAdam") == 0;
    o.eval_users = s->eval_users;
    o.use_gpu = (int)s->gpu;
    trainer_t t;
    if (trainer_init(&t, c, &cfg, &o, err, errlen)) return -1;
    if (s->gpu && strncmp(t.backend, "CUDA", 4) != 0) {
        tmr_error(err, errlen, "--gpu 1: no GPU backend (%s)", t.backend);
        trainer_free(&t);
        return -1;
    }
    step_clock_t k = {s->batch_size, s->warmup, s->batches, 0, 0, 0, 0};
    t.progress = on_batch;
    t.progress_ctx = &k;
    t.test_stop_after = s->warmup + s->batches;
    epoch_cursor_t cur = {0, 0, 0, 0};
    const double t0 = tmr_now();
    const int rc = trainer_train_epoch(&t, c, 0, &cur, err, errlen);
    if (rc == TRAIN_ERROR || rc == TRAIN_NONFINITE) {
        trainer_free(&t);
        return -1;
    }
    if (k.seen < s->warmup + s->batches) {
        trainer_free(&t);
        return tmr_error(err, errlen, "the epoch has %lld batches, fewer than --warmup + "
                         "--batches", (long long)cur.n_batches);
    }
    *prep_s = k.t_first - t0; /* the epoch's negatives and shuffle, and the first step */
    *sps = (double)(s->batches * s->batch_size) / (k.t_end - k.t_warm);
    metric_spec_t spec;
    metrics_parse("HR,NDCG", "50", &spec, err, errlen);
    double v[2];
    const double t1 = tmr_now();
    trainer_evaluate(&t, c, PHASE_TEST, 1, &spec, v);
    *eval_s = tmr_now() - t1;
    printf("  %-8s %10.0f samples/s  (epoch prep %.2f s)  test full-catalog over %lld "
           "instances: %.2f s, HR@50 %.4f\n", stage == STAGE_PRETRAIN ? "pretrain" : "finetune",
           *sps, *prep_s, (long long)t.n_eval, *eval_s, v[0]);
    trainer_free(&t);
    return 0;
}

static int parse(scale_opts_t *s, int argc, char **argv) {
    *s = (scale_opts_t){.scale = 1, .batches = 100, .warmup = 5, .eval_users = 1000,
                        .batch_size = 256, .history_max = 20, .reuse = 1, .keep = 0,
                        .dir = "/tmp/timirec_scale", .optimizer = "LazyAdam",
                        .csv = "bench/results/scale.csv"};
    opt_t table[] = {
        {"scale", OPT_FLOAT, &s->scale, 0.001, 1000, "times MovieLens-1M (users, items, "
         "interactions)"},
        {"users", OPT_INT, &s->users, 0, 2e9, "users (0: 6,040 x scale)"},
        {"items", OPT_INT, &s->items, 0, 2e9, "items (0: 3,706 x scale)"},
        {"interactions", OPT_INT, &s->interactions, 0, 4e9, "interactions (0: 1,000,209 x scale)"},
        {"batches", OPT_INT, &s->batches, 1, 1e6, "timed training steps per stage"},
        {"warmup", OPT_INT, &s->warmup, 1, 1e6, "untimed steps first"},
        {"eval_users", OPT_INT, &s->eval_users, 1, 2e9, "users in the full-catalog evaluation"},
        {"batch_size", OPT_INT, &s->batch_size, 1, 1 << 20, "batch size"},
        {"history_max", OPT_INT, &s->history_max, 1, 4096, "history length"},
        {"optimizer", OPT_STR, &s->optimizer, 0, 0, "Adam or LazyAdam"},
        {"dir", OPT_STR, &s->dir, 0, 0, "where the dataset is written"},
        {"reuse", OPT_INT, &s->reuse, 0, 1, "1: keep an existing dataset of these sizes"},
        {"keep", OPT_INT, &s->keep, 0, 1, "0: delete the dataset at the end"},
        {"csv", OPT_STR, &s->csv, 0, 0, "results file to append to (empty: none)"},
        {"load_only", OPT_INT, &s->load_only, 0, 1, "internal: the first load, then exit"},
        {"gpu", OPT_INT, &s->gpu, 0, 1, "1: train on the CUDA backend (a 'not run' row without a GPU)"},
    };
    const int n = (int)(sizeof table / sizeof table[0]);
    char err[1024];
    const int rc = options_parse(table, n, argc, argv, 1, NULL, 0, NULL, err, sizeof err);
    if (rc) {
        if (rc < 0) fprintf(stderr, "bench_scale: %s\n", err);
        options_usage("usage: bench_scale [options]", table, n, rc < 0 ? stderr : stdout);
        return rc < 0 ? 2 : 1;
    }
    if (strcmp(s->optimizer, "Adam") != 0 && strcmp(s->optimizer, "LazyAdam") != 0) {
        fprintf(stderr, "bench_scale: --optimizer must be Adam or LazyAdam\n");
        return 2;
    }
    if (!s->users) s->users = (int64_t)(6040 * s->scale + 0.5);
    if (!s->items) s->items = (int64_t)(3706 * s->scale + 0.5);
    if (!s->interactions) s->interactions = (int64_t)(1000209 * s->scale + 0.5);
    return 0;
}

/* The dataset: written unless --reuse finds one of these sizes (a stamp file names them). */
static int write_dataset(const scale_opts_t *s, const char *folder, double *synth_s, char *err,
                         size_t errlen) {
    char stamp[1200], want[200], have[200] = "";
    snprintf(stamp, sizeof stamp, "%s/sizes.txt", folder);
    snprintf(want, sizeof want, "%lld %lld %lld\n", (long long)s->users, (long long)s->items,
             (long long)s->interactions);
    FILE *f = s->reuse ? fopen(stamp, "r") : NULL;
    if (f) {
        if (!fgets(have, sizeof have, f)) have[0] = 0;
        fclose(f);
    }
    *synth_s = 0;
    if (strcmp(have, want) == 0) return 0;
    synth_opts_t so;
    synth_defaults(&so);
    so.n_users = s->users;
    so.n_items = s->items;
    so.n_interactions = s->interactions;
    so.pop_skew = 1;
    so.n_clusters = s->items >= 40000 ? 400 : 40;
    const double t0 = tmr_now();
    if (synth_write(&so, folder, 0, NULL, err, errlen)) return -1;
    *synth_s = tmr_now() - t0;
    f = fopen(stamp, "w");
    if (f) {
        fputs(want, f);
        fclose(f);
    }
    return 0;
}

/* The device column: the CPU, or with --gpu 1 the GPU and the CPU beside it. */
static void scale_device(const scale_opts_t *s, char *out, size_t n) {
    char cpu[256];
    bench_cpu_name(cpu, sizeof cpu);
    if (!s->gpu) {
        snprintf(out, n, "%s", cpu);
        return;
    }
    char gpu[256];
    tmr_cuda_describe(gpu, sizeof gpu);
    for (char *p = gpu; *p; p++)
        if (*p == ',') *p = ';'; /* one CSV field */
    snprintf(out, n, "%s (host %s)", gpu, cpu);
}

/* One row of --csv (header first in a new file); row NULL: sizes only ("not run"). */
static int append_row(const scale_opts_t *s, const char *device, const double *row, char *err,
                      size_t errlen) {
    if (!s->csv || !*s->csv) return 0;
    FILE *out = fopen(s->csv, "a");
    if (!out) return tmr_error(err, errlen, "cannot append to %s", s->csv);
    if (ftell(out) == 0)
        fprintf(out, "device,date,commit,scale,users,items,interactions,threads,optimizer,"
                     "batch_size,synth_s,load_s,load_peak_rss_mb,cache_load_s,"
                     "pretrain_samples_per_s,finetune_samples_per_s,pretrain_epoch_prep_s,"
                     "finetune_epoch_prep_s,peak_rss_mb,eval_users,pretrain_eval_s,"
                     "finetune_eval_s\n");
    const char *commit = bench_commit(), *date = bench_date();
    fprintf(out, "%s,%s,%s,%.4g,%lld,%lld,%lld,%d,%s,%lld,", device, date ? date : "",
            commit ? commit : "", (double)s->interactions / 1000209.0, (long long)s->users,
            (long long)s->items, (long long)s->interactions, omp_get_max_threads(), s->optimizer,
            (long long)s->batch_size);
    if (row)
        fprintf(out, "%.2f,%.2f,%.0f,%.3f,%.0f,%.0f,%.2f,%.2f,%.0f,%lld,%.2f,%.2f\n", row[0],
                row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
                (long long)s->eval_users, row[9], row[10]);
    else fprintf(out, ",,,,,,,,,%lld,,\n", (long long)s->eval_users);
    fclose(out);
    return 0;
}

int main(int argc, char **argv) {
    scale_opts_t s;
    int rc = parse(&s, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    char err[2048], folder[1024];
    corpus_opts_t co = {.path = s.dir, .dataset = "scale", .sep = '\t', .cache = CORPUS_CACHE_ON};
    if (s.load_only) return load_only(&co);
    if (s.gpu) { /* no GPU: say so in the table, without writing a dataset first */
        char why[256];
        if (!tmr_cuda_built() || tmr_cuda_describe(why, sizeof why) < 1) {
            if (!tmr_cuda_built()) snprintf(why, sizeof why, "built without nvcc");
            for (char *p = why; *p; p++)
                if (*p == ',') *p = ';';
            char device[300];
            snprintf(device, sizeof device, "not run: %s", why);
            printf("SKIP bench_scale --gpu 1: %s\n", why);
            return append_row(&s, device, NULL, err, sizeof err) ? 1 : 0;
        }
    }
    mkdir(s.dir, 0755);
    snprintf(folder, sizeof folder, "%s/scale", s.dir);
    printf("bench_scale: %lld users, %lld items, %lld interactions (%.3gx ML-1M), %s, %d "
           "threads\n", (long long)s.users, (long long)s.items, (long long)s.interactions,
           (double)s.interactions / 1000209.0, s.optimizer, omp_get_max_threads());
    double synth_s = 0, load_s = 0, load_rss = 0, t0;
    if (write_dataset(&s, folder, &synth_s, err, sizeof err)) goto fail;
    printf("  synth %.2f s\n", synth_s);
    if (first_load(s.dir, &load_s, &load_rss, err, sizeof err)) goto fail;
    printf("  first load (parse + index + cache write) %.2f s, peak RSS %.0f MB\n", load_s,
           load_rss);
    corpus_t c;
    t0 = tmr_now();
    if (corpus_load(&co, &c, err, sizeof err)) goto fail;
    const double cache_s = tmr_now() - t0;
    printf("  cached load %.3f s (%s)\n", cache_s, c.cache_note);
    double sps[2], prep[2], ev[2];
    for (int stage = STAGE_PRETRAIN; stage <= STAGE_FINETUNE; stage++)
        if (run_stage(&s, &c, stage, &sps[stage - STAGE_PRETRAIN], &prep[stage - STAGE_PRETRAIN],
                      &ev[stage - STAGE_PRETRAIN], err, sizeof err))
            goto fail;
    const double rss = peak_rss_mb(RUSAGE_SELF);
    printf("  peak RSS (cached corpus, training, evaluation) %.0f MB\n", rss);
    corpus_free(&c);
    char device[512];
    scale_device(&s, device, sizeof device);
    const double row[] = {synth_s, load_s, load_rss, cache_s, sps[0], sps[1], prep[0], prep[1], rss,
                          ev[0], ev[1]};
    if (append_row(&s, device, row, err, sizeof err)) goto fail;
    if (!s.keep) {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", folder);
        if (system(cmd) != 0) fprintf(stderr, "bench_scale: could not remove %s\n", folder);
    }
    return 0;
fail:
    fprintf(stderr, "bench_scale: %s\n", err);
    return 1;
}
