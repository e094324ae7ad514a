/* timirec sweep: every combination of a grid of run flags (both stages, one or more seeds),
 * each run a child process of this binary with its own model and log folders under DIR, one
 * row per run in DIR/sweep.csv (written after every run, so an interrupted sweep resumes where
 * it stopped), and gnuplot plots of a metric and of the throughput against each grid key.
 *
 *   timirec sweep --config configs/sweep_K_ml-100k.ini --grid "K=1,2,4;history_max=20,50" \
 *       [--seeds 0,1,2] --out DIR [any run flag, passed to every run]
 *
 * The pieces the command is built from are declared here so tests can reach them. */
#ifndef TIMIREC_SWEEP_H
#define TIMIREC_SWEEP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SWEEP_MAX_KEYS 8
#define SWEEP_MAX_VALUES 64
#define SWEEP_MAX_METRICS 64

/* "K=1,2,4;history_max=20,50": keys in the order given, values in the order given. */
typedef struct {
    int n_keys;
    char *key[SWEEP_MAX_KEYS];                        /* without "--" */
    int n_values[SWEEP_MAX_KEYS];
    char *value[SWEEP_MAX_KEYS][SWEEP_MAX_VALUES];
    int64_t n_points;                                 /* product of n_values */
} sweep_grid_t;

/* Parse a grid. Keys are flag names ([A-Za-z0-9_]+, a leading "--" allowed); values are
 * non-empty, without blanks, ',' or ';'; spaces around elements are ignored. Rejected (-1 with
 * a message naming the element): empty grid, key or value, a key without "=", a repeated key or
 * value, more than SWEEP_MAX_KEYS keys or SWEEP_MAX_VALUES values. */
int sweep_grid_parse(const char *text, sweep_grid_t *g, char *err, size_t errlen);
void sweep_grid_free(sweep_grid_t *g);

/* Value index of every key for point p (0 <= p < n_points): the last key varies fastest. */
void sweep_grid_point(const sweep_grid_t *g, int64_t p, int *idx);

/* What one run's JSON-lines log (run.c's --json_log) says. */
typedef struct {
    int has_test;               /* the final "test" record was found */
    int epochs;                 /* "epoch" records */
    int best_epoch;             /* the last epoch marked best: the checkpoint the test reloaded
                                   (0 without epochs) */
    int n_dev, n_test;
    char dev_name[SWEEP_MAX_METRICS][24];   /* "NDCG@5": dev metrics at best_epoch */
    double dev[SWEEP_MAX_METRICS];
    char test_name[SWEEP_MAX_METRICS][24];  /* test metrics after training, every topk */
    double test[SWEEP_MAX_METRICS];
    double train_s, eval_s;     /* summed over epochs */
    double samples_per_s;       /* training samples over training time, all epochs */
} sweep_result_t;

/* Read the JSON-lines log of one run. 0, or -1 with a message (missing file, a line that is not
 * a JSON object). A run that stopped before its test record gives has_test = 0. */
int sweep_read_json_log(const char *path, sweep_result_t *r, char *err, size_t errlen);

/* One CSV line (no newline) into fields, RFC 4180 quoting ("a,b" and "say ""hi"""): returns the
 * number of fields (at most max_fields; the rest are dropped), each a malloc'd string. */
int sweep_csv_split(const char *line, char **fields, int max_fields);
/* A field as CSV writes it: quoted when it holds ',', '"', or a line break. */
void sweep_csv_field(FILE *f, const char *s);

/* The command: argv[0] = "sweep". Returns the exit code: 0 every run ok, 1 some run failed
 * (the sweep still ran every point), 2 usage error, 130 interrupted (run again to resume). */
int sweep_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
