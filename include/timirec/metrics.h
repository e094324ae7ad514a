/* Ranking metrics (SPEC.md section 7). The rank of the target is 1 + the number of other
 * candidates whose score is >= the target's: a tie counts against the target (the
 * pessimistic convention of later ReChorus versions; the reference's argsort broke ties in
 * an unspecified order). A NaN target score gets the worst rank.
 *   HR@k   = mean(rank <= k)
 *   NDCG@k = mean((rank <= k) / log2(rank + 1))
 *   MRR@k  = mean((rank <= k) / rank) */
#ifndef TIMIREC_METRICS_H
#define TIMIREC_METRICS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum metric_kind { METRIC_HR = 0, METRIC_NDCG = 1, METRIC_MRR = 2 };
#define METRICS_MAX_TOPK 16
#define METRICS_MAX_KINDS 3

typedef struct {
    int n_topk;
    int topk[METRICS_MAX_TOPK];         /* in the order given, e.g. 5,10,20,50 */
    int n_kind;
    int kind[METRICS_MAX_KINDS];        /* in the order given, e.g. NDCG,HR */
} metric_spec_t;

/* Parse "--metric NDCG,HR" and "--topk 5,10,20,50" (case-insensitive names, spaces allowed).
 * Returns 0, or -1 with a message naming the bad element. */
int metrics_parse(const char *metric_list, const char *topk_list, metric_spec_t *spec,
                  char *err, size_t errlen);

/* "NDCG@5", the main metric: first kind at first topk. */
void metrics_main_name(const metric_spec_t *spec, char *out, size_t outlen);

/* Rank of candidate 0 among scores[0 .. n_cand). */
int64_t metrics_rank(const float *scores, int64_t n_cand);

/* Full-ranking rank (test_all): item_scores[i] is the score of item i for i in 1..n_items-1
 * (entry 0, the padding row, is ignored). The target's rank among every item that is not in
 * the sorted list `excluded` (the user's train/dev/test items); the target itself is always
 * ranked, even when it is in `excluded`. */
int64_t metrics_rank_all(const float *item_scores, int32_t n_items, int32_t target,
                         const int32_t *excluded, int64_t n_excluded);

/* Ranks of every row of a score matrix (n_rows, n_cand), target in column 0. OpenMP. */
void metrics_rank_rows(const float *scores, int64_t n_rows, int64_t n_cand, int64_t *ranks);

/* values[m * spec->n_topk + t] = metric spec->kind[m] at spec->topk[t], averaged over n ranks. */
void metrics_compute(const metric_spec_t *spec, const int64_t *ranks, int64_t n, double *values);

/* Value of one (kind, k) from ranks. */
double metrics_value(int kind, int k, const int64_t *ranks, int64_t n);

/* The reference's format: topk ascending, then metric names alphabetically, 4 decimals:
 * "HR@5:0.1315,NDCG@5:0.0877,HR@10:...". Only topks listed in `which_topk` (n of them, NULL =
 * all). Returns the length written (truncated to outlen - 1). */
int metrics_format(const metric_spec_t *spec, const double *values, char *out, size_t outlen);

const char *metrics_kind_name(int kind); /* "HR", "NDCG", "MRR" */

#ifdef __cplusplus
}
#endif
#endif
