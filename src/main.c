/* bin/timirec: the command line. A first argument starting with "--" is a training run with
 * the reference's flags (run.c: timirec --model_name TiMiRec --dataset NAME ...); otherwise it
 * names a command: data (load a dataset: statistics, one epoch of batches, the popularity
 * baseline; here), prepare and synth (dataset tools, prepare.c and synth.c), recommend (top-K
 * lists from a checkpoint, recommend.c), sweep (a grid of runs, sweep.c) and info (the build and
 * the GPU it sees; here). No argument, --help, -h or help: the list of commands; --version. */
#include "timirec/comm.h"
#include "timirec/common.h"
#include "timirec/corpus.h"
#include "timirec/metrics.h"
#include "timirec/options.h"
#include "timirec/prepare.h"
#include "timirec/run.h"
#include "timirec/sampler.h"
#include "timirec/sweep.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timirec/cuda.h"

#define TIMIREC_VERSION "0.1.0"

static void usage(FILE *out) {
    fprintf(out,
            "timirec %s: a TiMiRec trainer (%s)\n\n"
            "usage: timirec COMMAND [options]     (timirec COMMAND --help for its options)\n\n"
            "commands:\n"
            "  data      load a dataset: statistics, batch assembly, popularity baseline metrics\n"
            "  prepare   raw interactions (MovieLens, u.data, csv, sequence files) -> dataset\n"
            "  synth     write a synthetic dataset with planted multi-interest structure\n"
            "  recommend top-K item lists for every user from a checkpoint (TSV)\n"
            "  sweep     train every combination of a grid of flags (and seeds): CSV and plots\n"
            "  info      what this build contains and which GPU it sees\n\n"
            "Training takes the reference's flags: timirec --model_name TiMiRec --dataset NAME "
            "--path DIR\n  --stage pretrain|finetune [...]   (timirec --model_name TiMiRec --help "
            "lists them)\n",
            TIMIREC_VERSION,
            tmr_cuda_built() ? "CPU backend; CUDA backend built in: --gpu 0"
                             : "CPU backend; built without CUDA");
}

static int cmd_info(void) {
    printf("timirec %s\n", TIMIREC_VERSION);
    char desc[512];
    tmr_cuda_describe(desc, sizeof desc);
    printf("CUDA: %s%s\n", tmr_cuda_built() ? "built in; " : "", desc);
    printf("MPI: %s\n", comm_mpi_built() ? "built in (mpirun -np N timirec ... trains on N ranks)"
                                          : "not built (no mpicc at build time): one process");
    return 0;
}

/* Popularity: score = number of train rows of the item. */
static void evaluate_popularity(const corpus_t *c, int phase, const int64_t *train_count,
                                int test_all, const metric_spec_t *spec, double *values) {
    const corpus_phase_t *ph = &c->phase[phase];
    int64_t *ranks = tmr_malloc(tmr_mul_size((size_t)ph->n_inst + 1, sizeof *ranks));
    float *item_scores = tmr_malloc(tmr_mul_size((size_t)c->n_items, sizeof *item_scores));
    for (int32_t i = 0; i < c->n_items; i++) item_scores[i] = (float)train_count[i];
    int C = 1 + ph->n_neg;
    float *row = tmr_malloc(tmr_mul_size((size_t)C, sizeof *row));
    for (int64_t k = 0; k < ph->n_inst; k++) {
        int64_t r = ph->inst_row[k];
        if (test_all) {
            int32_t u = ph->user[r];
            ranks[k] = metrics_rank_all(item_scores, c->n_items, ph->item[r],
                                        c->all_items + c->all_off[u],
                                        c->all_off[u + 1] - c->all_off[u]);
        } else {
            row[0] = item_scores[ph->item[r]];
            for (int j = 0; j < ph->n_neg; j++)
                row[1 + j] = item_scores[ph->neg[r * ph->n_neg + j]];
            ranks[k] = metrics_rank(row, C);
        }
    }
    metrics_compute(spec, ranks, ph->n_inst, values);
    free(row);
    free(item_scores);
    free(ranks);
}

/* Every instance as "phase user item position length: h1 h2 ..." (phase 0 train, 1 dev,
 * 2 test), the format tests/reference/seq_reference.py prints from the reference pipeline. */
static int dump_instances(const corpus_t *c, int history_max, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "timirec: error: cannot write %s\n", path);
        return -1;
    }
    for (int p = 0; p < N_PHASES; p++) {
        const corpus_phase_t *ph = &c->phase[p];
        for (int64_t k = 0; k < ph->n_inst; k++) {
            int64_t r = ph->inst_row[k];
            const int32_t *h;
            int32_t n = corpus_history(c, ph->user[r], ph->position[r], history_max, &h);
            fprintf(f, "%d %d %d %d %d:", p, ph->user[r], ph->item[r], ph->position[r], n);
            for (int32_t i = 0; i < n; i++) fprintf(f, " %d", h[i]);
            fputc('\n', f);
        }
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "timirec: error: writing %s failed\n", path);
        return -1;
    }
    return 0;
}

/* The options of timirec data. */
typedef struct {
    const char *path, *dataset, *sep, *topk, *metric, *dump;
    int64_t history_max, batch_size, num_neg, seed, test_all, cache, regenerate;
    char sep_char;
    metric_spec_t spec;
} data_opts_t;

/* Parse and check them. Returns -1 to go on, else the exit code (0 after --help, 2 refused). */
static int data_options(data_opts_t *d, int argc, char **argv) {
    *d = (data_opts_t){.path = "../data/", .dataset = "", .sep = "\t", .topk = "5,10,20,50",
                       .metric = "NDCG,HR", .dump = "", .history_max = 20, .batch_size = 256,
                       .num_neg = 1, .cache = 1};
    opt_t table[] = {
        {"path", OPT_STR, &d->path, 0, 0, "folder holding the dataset folder"},
        {"dataset", OPT_STR, &d->dataset, 0, 0, "dataset folder name"},
        {"sep", OPT_STR, &d->sep, 0, 0, "column separator (one character; \\t for tab)"},
        {"history_max", OPT_INT, &d->history_max, 0, 1 << 20, "longest history kept (0: all)"},
        {"batch_size", OPT_INT, &d->batch_size, 1, 1 << 20, "training batch size"},
        {"num_neg", OPT_INT, &d->num_neg, 0, 1 << 16, "training negatives per instance"},
        {"random_seed", OPT_INT, &d->seed, 0, 9.2e18, "seed of every random draw"},
        {"topk", OPT_STR, &d->topk, 0, 0, "cut-offs of the metrics"},
        {"metric", OPT_STR, &d->metric, 0, 0, "metrics: HR, NDCG, MRR"},
        {"test_all", OPT_INT, &d->test_all, 0, 1, "rank against every item (full ranking)"},
        {"cache", OPT_INT, &d->cache, 0, 1, "read and keep the binary dataset cache beside the "
                                           "CSVs (0: parse them)"},
        {"regenerate", OPT_INT, &d->regenerate, 0, 1, "rebuild the dataset cache even when valid"},
        {"dump", OPT_STR, &d->dump, 0, 0, "write every instance (phase user item position length: "
                                          "history) to this file"},
    };
    int n_opts = (int)(sizeof table / sizeof table[0]);
    char err[2048];
    int rc = options_parse(table, n_opts, argc, argv, 1, NULL, 0, NULL, err, sizeof err);
    if (rc == 1) {
        options_usage("usage: timirec data --path DIR --dataset NAME [options]\n"
                      "Loads DIR/NAME/{train,dev,test}.csv, prints statistics, assembles one epoch "
                      "of training batches\nand evaluates the popularity baseline on dev and test.",
                      table, n_opts, stdout);
        return 0;
    }
    if (rc) {
        fprintf(stderr, "timirec data: %s\n", err);
        return 2;
    }
    d->sep_char = strcmp(d->sep, "\\t") == 0 ? '\t' : d->sep[0];
    if (strlen(d->sep) != 1 && strcmp(d->sep, "\\t") != 0) {
        fprintf(stderr, "timirec data: --sep must be one character, got \"%s\"\n", d->sep);
        return 2;
    }
    if (metrics_parse(d->metric, d->topk, &d->spec, err, sizeof err)) {
        fprintf(stderr, "timirec data: %s\n", err);
        return 2;
    }
    return -1;
}

/* Rows and instances of each phase, as the reference logs them, and what was left out. */
static void print_corpus_stats(const corpus_t *c, const data_opts_t *d, double t_load) {
    int64_t entries = 0;
    for (int p = 0; p < N_PHASES; p++) entries += c->phase[p].n_rows;
    printf("Reading data from \"%s\", dataset = \"%s\": %.3f s\n", d->path, d->dataset, t_load);
    printf("%s\n", c->cache_note[0] ? c->cache_note : "Dataset cache: off (--cache 0); parsed the CSVs");
    printf("\"# user\": %d, \"# item\": %d, \"# entry\": %lld\n", c->n_users - 1, c->n_items - 1,
           (long long)entries);
    for (int p = 0; p < N_PHASES; p++) {
        const corpus_phase_t *ph = &c->phase[p];
        printf("  %-5s %9lld rows, %9lld instances", corpus_phase_names[p], (long long)ph->n_rows,
               (long long)ph->n_inst);
        if (p != PHASE_TRAIN) printf(", %d negatives each", ph->n_neg);
        putchar('\n');
    }
    if (c->n_single_users)
        printf("  %lld users have a single interaction: no instance (as in the reference)\n",
               (long long)c->n_single_users);
    if (c->n_duplicate_rows)
        printf("  warning: %lld repeated (user_id, item_id, time) rows; each is kept once with its "
               "own position (the reference's merge would multiply them)\n",
               (long long)c->n_duplicate_rows);
}

/* One epoch of training batches: negatives, shuffle, assembly, each timed. 0 or 1 (error). */
static int time_one_epoch(const corpus_t *c, const data_opts_t *d) {
    const corpus_phase_t *tr = &c->phase[PHASE_TRAIN];
    int64_t batch_size = d->batch_size;
    int history_max = (int)d->history_max, num_neg = (int)d->num_neg;
    char err[2048];
    double t0 = tmr_now();
    int32_t *neg = tmr_malloc(tmr_mul_size((size_t)tr->n_inst * (size_t)num_neg + 1, sizeof *neg));
    if (sampler_train_negatives(c, (uint64_t)d->seed, 0, num_neg, neg, err, sizeof err)) {
        fprintf(stderr, "timirec: error: %s\n", err);
        free(neg);
        return 1;
    }
    double t_neg = tmr_now() - t0;
    int64_t *perm = tmr_malloc(tmr_mul_size((size_t)tr->n_inst + 1, sizeof *perm));
    t0 = tmr_now();
    sampler_shuffle(tr->n_inst, (uint64_t)d->seed, 0, perm);
    double t_shuffle = tmr_now() - t0;
    batch_t b;
    int max_L = sampler_max_history(c, history_max);
    batch_alloc(&b, (int)batch_size, max_L, 1 + num_neg);
    t0 = tmr_now();
    double hist_sum = 0;
    int64_t n_batches = 0;
    for (int64_t s = 0; s < tr->n_inst; s += batch_size, n_batches++) {
        int B = (int)(tr->n_inst - s < batch_size ? tr->n_inst - s : batch_size);
        batch_fill(&b, c, PHASE_TRAIN, perm + s, B, history_max, neg, num_neg, 0);
        for (int i = 0; i < B; i++) hist_sum += b.length[i];
    }
    double t_batches = tmr_now() - t0;
    printf("One training epoch: %lld batches of %lld, mean history %.2f (history_max %lld, "
           "longest %d); negatives %.3f s, shuffle %.3f s, assembly %.3f s\n",
           (long long)n_batches, (long long)batch_size, tr->n_inst ? hist_sum / tr->n_inst : 0.0,
           (long long)d->history_max, max_L, t_neg, t_shuffle, t_batches);
    batch_free(&b);
    free(perm);
    free(neg);
    return 0;
}

/* The popularity baseline's metrics on dev and test. */
static void print_popularity(const corpus_t *c, const data_opts_t *d) {
    const corpus_phase_t *tr = &c->phase[PHASE_TRAIN];
    int64_t *train_count = tmr_calloc((size_t)c->n_items, sizeof *train_count);
    for (int64_t r = 0; r < tr->n_rows; r++) train_count[tr->item[r]]++;
    double values[METRICS_MAX_KINDS * METRICS_MAX_TOPK];
    char line[4096];
    for (int p = PHASE_DEV; p <= PHASE_TEST; p++) {
        if (!d->test_all && !c->phase[p].has_neg) {
            printf("POP %s: no neg_items column (use --test_all 1)\n", corpus_phase_names[p]);
            continue;
        }
        double t0 = tmr_now();
        evaluate_popularity(c, p, train_count, (int)d->test_all, &d->spec, values);
        metrics_format(&d->spec, values, line, sizeof line);
        printf("POP %-4s%s (%s) [%.3f s]\n", corpus_phase_names[p], d->test_all ? " all" : "", line,
               tmr_now() - t0);
    }
    free(train_count);
}

static int cmd_data(int argc, char **argv) {
    data_opts_t d;
    int rc = data_options(&d, argc, argv);
    if (rc >= 0) return rc;
    corpus_t c;
    corpus_opts_t copts = {.path = d.path, .dataset = d.dataset, .sep = d.sep_char,
                           .cache = !d.cache ? CORPUS_CACHE_OFF
                                    : d.regenerate ? CORPUS_CACHE_REBUILD : CORPUS_CACHE_ON};
    char err[2048];
    double t0 = tmr_now();
    if (corpus_load(&copts, &c, err, sizeof err)) {
        fprintf(stderr, "timirec: error: %s\n", err);
        return 1;
    }
    print_corpus_stats(&c, &d, tmr_now() - t0);
    rc = *d.dump && dump_instances(&c, (int)d.history_max, d.dump) ? 1 : time_one_epoch(&c, &d);
    if (rc == 0) print_popularity(&c, &d);
    corpus_free(&c);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0) {
        printf("timirec %s\n", TIMIREC_VERSION);
        return 0;
    }
    if (strcmp(cmd, "data") == 0) return cmd_data(argc - 1, argv + 1);
    if (strcmp(cmd, "prepare") == 0) return prepare_main(argc - 1, argv + 1);
    if (strcmp(cmd, "synth") == 0) return synth_main(argc - 1, argv + 1);
    if (strcmp(cmd, "info") == 0) return cmd_info();
    if (strcmp(cmd, "recommend") == 0) return recommend_main(argc - 1, argv + 1);
    if (strcmp(cmd, "sweep") == 0) return sweep_main(argc - 1, argv + 1);
    if (strncmp(cmd, "--", 2) == 0) return run_main(argc, argv); /* the reference's command line */
    fprintf(stderr, "timirec: unknown command \"%s\" (see timirec --help)\n", cmd);
    return 2;
}
