/* JSON-lines logs: a small reader of flat JSON records (one object a line, as run.c's
 * --json_log writes them), and the summary of one run's log that timirec sweep records.
 *
 * The reader walks a record in place, member by member:
 *
 *   const char *p = line, *v;  char key[64];  int rc;
 *   while ((rc = jsonl_next_member(&p, key, sizeof key, &v)) == 1) {
 *       if (strcmp(key, "loss") == 0) jsonl_number(v, &loss);
 *       p = v;
 *       if (jsonl_skip(&p)) break;      // leave p after the value
 *   }                                   // rc: 0 at the closing '}', -1 malformed
 *
 * Strings keep \" \\ \/ \n \t; a \uXXXX escape reads as '?' (the logs hold ASCII names). */
#ifndef TIMIREC_JSONL_H
#define TIMIREC_JSONL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define JSONL_MAX_METRICS 64
#define JSONL_NAME_LEN 24

/* Skip blanks (space, tab, line breaks). */
void jsonl_ws(const char **p);
/* The string at *p (which must point at '"') into out (at most n-1 bytes kept; out may be NULL
 * to skip it); *p ends past the closing quote. 0 or -1. */
int jsonl_string(const char **p, char *out, size_t n);
/* Skip one value at *p (string, number, true/false/null, object or array, nested). 0 or -1. */
int jsonl_skip(const char **p);
/* Next member of an object: *p at '{' (first call) or just after the previous value. Returns 1
 * with key and *value (pointing at the value, which the caller reads, then skips with
 * jsonl_skip from there), 0 at the closing '}', -1 on malformed input. */
int jsonl_next_member(const char **p, char *key, size_t n, const char **value);
/* The number at v. 0 or -1 (not a number). */
int jsonl_number(const char *v, double *out);
/* An object of numbers {"NDCG@5": 0.1, ...} at v: up to max members with a number value into
 * names (cut to JSONL_NAME_LEN - 1 bytes) and values, in order. Returns the count, or -1. */
int jsonl_number_object(const char *v, int max, char (*names)[JSONL_NAME_LEN], double *values);

/* What one run's JSON-lines log (run.c's --json_log) says. */
typedef struct {
    int has_test;               /* the final "test" record was found */
    int epochs;                 /* "epoch" records */
    int best_epoch;             /* the last epoch marked best: the checkpoint the test reloaded
                                   (0 without epochs) */
    int n_dev, n_test;
    char dev_name[JSONL_MAX_METRICS][JSONL_NAME_LEN];  /* "NDCG@5": dev metrics at best_epoch */
    double dev[JSONL_MAX_METRICS];
    char test_name[JSONL_MAX_METRICS][JSONL_NAME_LEN]; /* test metrics after training, every topk */
    double test[JSONL_MAX_METRICS];
    double train_s, eval_s;     /* summed over epochs */
    double samples_per_s;       /* training samples over training time, all epochs */
} jsonl_run_summary_t;

/* Read the JSON-lines log of one run. 0, or -1 with a message (missing file, a line that is not
 * a JSON object, a malformed record). A run that stopped before its test record gives
 * has_test = 0. */
int jsonl_read_run_log(const char *path, jsonl_run_summary_t *r, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
