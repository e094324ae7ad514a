/* Data pipeline benchmark at MovieLens-1M scale: 6,040 users, 3,706 items, 1,000,209
 * interactions (at least 20 a user, as in ML-1M), dev/test with 1,000 negatives per row.
 * Times, median of --repeats runs: corpus_load (parse + index), one epoch of training
 * negatives, the shuffle, batch assembly, and ranking the dev set (popularity scores).
 * Goal (issue 2): the load under 1 s on the 2-core development machine.
 * Prints a table and appends one row to bench/results/data.csv. */
#include "timirec/common.h"
#include "timirec/corpus.h"
#include "timirec/metrics.h"
#include "timirec/options.h"
#include "timirec/prepare.h"
#include "timirec/sampler.h"
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static long long file_bytes(const char *dir, const char *name) {
    char p[1024];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0 ? (long long)st.st_size : 0;
}

int main(int argc, char **argv) {
    const char *dir = "data/bench-ml1m", *csv = "bench/results/data.csv";
    int64_t repeats = 5, regenerate = 0;
    opt_t table[] = {
        {"dir", OPT_STR, &dir, 0, 0, "dataset folder (generated when missing)"},
        {"repeats", OPT_INT, &repeats, 1, 100, "timed runs (median reported)"},
        {"regenerate", OPT_INT, &regenerate, 0, 1, "regenerate the dataset"},
        {"csv", OPT_STR, &csv, 0, 0, "results file to append to (empty: none)"},
    };
    int n_opts = (int)(sizeof table / sizeof table[0]);
    char err[2048];
    int rc = options_parse(table, n_opts, argc, argv, 1, NULL, 0, NULL, err, sizeof err);
    if (rc) {
        if (rc < 0) fprintf(stderr, "bench_data: %s\n", err);
        options_usage("usage: bench_data [options]", table, n_opts, rc < 0 ? stderr : stdout);
        return rc < 0 ? 2 : 0;
    }

    char train_path[1024];
    snprintf(train_path, sizeof train_path, "%s/train.csv", dir);
    if (regenerate || access(train_path, R_OK) != 0) {
        if (bench_write_ml1m_synth(dir, err, sizeof err)) {
            fprintf(stderr, "bench_data: generating %s: %s\n", dir, err);
            return 1;
        }
    }
    long long bytes = file_bytes(dir, "train.csv") + file_bytes(dir, "dev.csv") +
                      file_bytes(dir, "test.csv");

    double t_load[100], t_neg[100], t_shuf[100], t_batch[100], t_eval[100];
    corpus_t c;
    corpus_opts_t co = {.path = dir, .dataset = "", .sep = '\t'};
    metric_spec_t spec;
    metrics_parse("NDCG,HR", "5", &spec, err, sizeof err);
    double dev_values[2] = {0, 0};
    for (int r = 0; r < repeats; r++) {
        double t0 = tmr_now();
        if (corpus_load(&co, &c, err, sizeof err)) {
            fprintf(stderr, "bench_data: %s\n", err);
            return 1;
        }
        t_load[r] = tmr_now() - t0;

        const corpus_phase_t *tr = &c.phase[PHASE_TRAIN];
        int32_t *neg = tmr_malloc((size_t)tr->n_inst * sizeof *neg);
        t0 = tmr_now();
        sampler_train_negatives(&c, 0, (uint32_t)r, 1, neg, err, sizeof err);
        t_neg[r] = tmr_now() - t0;
        int64_t *perm = tmr_malloc((size_t)tr->n_inst * sizeof *perm);
        t0 = tmr_now();
        sampler_shuffle(tr->n_inst, 0, (uint32_t)r, perm);
        t_shuf[r] = tmr_now() - t0;
        batch_t b;
        batch_alloc(&b, 256, 20, 2);
        t0 = tmr_now();
        for (int64_t s = 0; s < tr->n_inst; s += 256) {
            int B = (int)(tr->n_inst - s < 256 ? tr->n_inst - s : 256);
            batch_fill(&b, &c, PHASE_TRAIN, perm + s, B, 20, neg, 1, 0);
        }
        t_batch[r] = tmr_now() - t0;
        batch_free(&b);

        /* Dev ranking: (n_dev, 1001) popularity scores, then ranks and metrics. */
        const corpus_phase_t *dv = &c.phase[PHASE_DEV];
        float *pop = tmr_calloc((size_t)c.n_items, sizeof *pop);
        for (int64_t i = 0; i < tr->n_rows; i++) pop[tr->item[i]] += 1.0f;
        int C = 1 + dv->n_neg;
        float *scores = tmr_malloc((size_t)dv->n_inst * C * sizeof *scores);
        int64_t *ranks = tmr_malloc((size_t)dv->n_inst * sizeof *ranks);
        t0 = tmr_now();
        for (int64_t k = 0; k < dv->n_inst; k++) {
            int64_t row = dv->inst_row[k];
            scores[k * C] = pop[dv->item[row]];
            for (int j = 0; j < dv->n_neg; j++) scores[k * C + 1 + j] = pop[dv->neg[row * dv->n_neg + j]];
        }
        metrics_rank_rows(scores, dv->n_inst, C, ranks);
        metrics_compute(&spec, ranks, dv->n_inst, dev_values);
        t_eval[r] = tmr_now() - t0;
        free(scores);
        free(ranks);
        free(pop);
        free(perm);
        free(neg);
        if (r + 1 < repeats) corpus_free(&c);
    }
    int n = (int)repeats;
    double load = bench_median(t_load, n), negs = bench_median(t_neg, n), shuf = bench_median(t_shuf, n),
           bat = bench_median(t_batch, n), ev = bench_median(t_eval, n);
    char device[256];
    bench_cpu_name(device, sizeof device);
    const char *commit = bench_commit(), *date = bench_date();

    printf("\ndata pipeline at MovieLens-1M scale (%s), median of %d runs, %d threads\n", device, n,
#ifdef _OPENMP
           omp_get_max_threads()
#else
           1
#endif
    );
    printf("  rows: train %lld, dev %lld x %d negatives, test %lld; files %.1f MB\n",
           (long long)c.phase[0].n_rows, (long long)c.phase[1].n_rows, c.phase[1].n_neg,
           (long long)c.phase[2].n_rows, bytes / 1e6);
    printf("  %-34s %9.3f s  (%.0f MB/s)   goal < 1 s: %s\n", "load (parse + index)", load,
           bytes / 1e6 / load, load < 1.0 ? "met" : "NOT MET");
    printf("  %-34s %9.3f s\n", "training negatives (1 epoch)", negs);
    printf("  %-34s %9.3f s\n", "shuffle (1 epoch)", shuf);
    printf("  %-34s %9.3f s\n", "batch assembly (1 epoch, B=256)", bat);
    printf("  %-34s %9.3f s  (HR@5 %.4f of popularity)\n", "dev ranking + metrics", ev,
           dev_values[1]);
    if (csv && *csv) {
        FILE *f = fopen(csv, "a");
        if (f) {
            if (ftell(f) == 0)
                fprintf(f, "device,date,commit,dataset,train_rows,eval_negatives,load_s,"
                           "negatives_s,shuffle_s,batches_s,dev_rank_s\n");
            fprintf(f, "%s,%s,%s,synthetic-ml1m,%lld,%d,%.4f,%.4f,%.4f,%.4f,%.4f\n", device,
                    date ? date : "", commit ? commit : "", (long long)c.phase[0].n_rows,
                    c.phase[1].n_neg, load, negs, shuf, bat, ev);
            fclose(f);
            printf("  appended to %s\n", csv);
        }
    }
    corpus_free(&c);
    return 0;
}
