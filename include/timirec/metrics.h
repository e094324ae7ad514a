/* Ranking metrics (docs/MODEL.md, "Evaluation and metrics"). The rank of the target is 1 + the
 * number of other candidates whose score is >= the target's: a tie counts against the target (the
 * pessimistic convention of later ReChorus versions; the reference's argsort broke ties in an
 * unspecified order, so a model that scores everything equal gets the worst rank, not a lucky one).
 * Edge cases, all by the same rule:
 *   - a NaN target score gets the worst rank (the number of candidates ranked);
 *   - a NaN among the other candidates is never counted (NaN >= x is false): it sits below
 *     every non-NaN target;
 *   - -inf candidates never beat a finite target; two equal infinities tie (against the target).
 *   HR@k   = mean(rank <= k)
 *   NDCG@k = mean((rank <= k) / log2(rank + 1))
 *   MRR@k  = mean((rank <= k) / rank)
 * Means are accumulated in double, in row order (the same result for any thread count). */
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

/* Parse "--metric NDCG,HR" and "--topk 5,10,20,50": comma-separated, spaces around an element
 * allowed, names case-insensitive (the reference upper-cases them). Rejected: unknown names,
 * topk values that are not positive decimal integers, empty elements or lists, more than
 * METRICS_MAX_KINDS names or METRICS_MAX_TOPK values. A repeated element is accepted (the
 * reference accepts it too; metrics_format prints it once). Returns 0, or -1 with a message
 * naming the bad element and the accepted values; *spec is only written on success. */
int metrics_parse(const char *metric_list, const char *topk_list, metric_spec_t *spec,
                  char *err, size_t errlen);

/* "NDCG@5", the main metric: first kind at first topk. */
void metrics_main_name(const metric_spec_t *spec, char *out, size_t outlen);

/* Rank of candidate 0 among scores[0 .. n_cand), in 1..n_cand. n_cand >= 1 (fatal otherwise). */
int64_t metrics_rank(const float *scores, int64_t n_cand);

/* Full-ranking rank (test_all): item_scores[i] is the score of item i for i in 1..n_items-1
 * (entry 0, the padding row, is ignored). The target's rank among every item that is not in
 * the list `excluded` (the user's train/dev/test items), sorted ascending; duplicates and
 * values outside 1..n_items-1 are harmless. The target itself is always ranked, even when it
 * is in `excluded`. One pass over the items with a merge-style walk of `excluded`.
 * target must be in 1..n_items-1 (fatal otherwise); a NaN target gets the worst rank, the
 * number of items ranked. */
int64_t metrics_rank_all(const float *item_scores, int32_t n_items, int32_t target,
                         const int32_t *excluded, int64_t n_excluded);

/* Ranks of every row of a score matrix (n_rows, n_cand) row-major, target in column 0:
 * ranks[r] = metrics_rank(scores + r * n_cand, n_cand). OpenMP over rows. */
void metrics_rank_rows(const float *scores, int64_t n_rows, int64_t n_cand, int64_t *ranks);

/* values[m * spec->n_topk + t] = metric spec->kind[m] at spec->topk[t], averaged over n ranks. */
void metrics_compute(const metric_spec_t *spec, const int64_t *ranks, int64_t n, double *values);

/* Value of one (kind, k) from ranks: the mean over n ranks (0 when n <= 0). A rank counts as a
 * hit only when 1 <= rank <= k. Unknown kinds are fatal. */
double metrics_value(int kind, int k, const int64_t *ranks, int64_t n);

/* The reference's format (utils.format_metric): topk ascending, then metric names alphabetically
 * (HR < MRR < NDCG), each distinct (name, k) once, "NAME@k:%.4f" joined by commas:
 * "HR@5:0.1315,NDCG@5:0.0877,HR@10:...". Returns the length written (truncated to
 * outlen - 1). For dev evaluation at the first topk only, pass a spec with n_topk = 1. */
int metrics_format(const metric_spec_t *spec, const double *values, char *out, size_t outlen);

/* Per-instance metrics as TSV (--per_user_metrics): header "user_id\titem_id\trank" then one
 * column per (kind, topk) in spec order ("NDCG@5", ...), and one row per instance i: the user
 * and target of row inst_row[i] of the phase (users/items indexed by row), its rank and
 * metrics_value of that rank alone (%.6f). The mean of a column is the reported metric.
 * Written to path.tmp and renamed. Returns 0, or -1 with a message. */
int metrics_write_per_instance(const char *path, const metric_spec_t *spec, const int32_t *users,
                               const int32_t *items, const int64_t *inst_row, const int64_t *ranks,
                               int64_t n, char *err, size_t errlen);

const char *metrics_kind_name(int kind); /* "HR", "NDCG", "MRR"; "?" for anything else */

#ifdef __cplusplus
}
#endif
#endif
