/* timirec sweep: every combination of a grid of run flags (both stages, one or more seeds),
 * each run a child process of this binary with its own model and log folders under DIR, one
 * row per run in DIR/sweep.csv (written after every run, so an interrupted sweep resumes where
 * it stopped), and gnuplot plots of a metric and of the throughput against each grid key.
 *
 *   timirec sweep --config configs/sweep_K_ml-100k.ini --grid "K=1,2,4;history_max=20,50" \
 *       [--seeds 0,1,2] [--gpus 0,1] --out DIR [any run flag, passed to every run]
 *
 * Without --gpus one run at a time; with --gpus up to one run per listed GPU at once (each run
 * given --gpu ID, a point's stages in order on one GPU). Either way sweep.csv's rows are in grid
 * order, whatever order the runs end in.
 *
 * The grid is declared here so tests can reach it; each run's JSON-lines log is read by jsonl.h,
 * sweep.csv is a csv_table.h table, the figures are plot.h's. */
#ifndef TIMIREC_SWEEP_H
#define TIMIREC_SWEEP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SWEEP_MAX_KEYS 8
#define SWEEP_MAX_VALUES 64

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

/* The command: argv[0] = "sweep". Returns the exit code: 0 every run ok, 1 some run failed
 * (the sweep still ran every point), 2 usage error, 128 + the signal when interrupted by
 * SIGINT or SIGTERM (130, 143: run the same command again to resume); 1 when sweep.csv cannot
 * be written. */
int sweep_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
