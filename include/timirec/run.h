/* The reference's command line (README, "Training: the reference's command line") and its training
 * run (docs/MODEL.md, "Training loop"):
 *   bin/timirec --model_name TiMiRec --dataset ml-1m --lr 1e-4 --l2 1e-6 --history_max 20 \
 *       --K 2 --add_pos 1 --add_trm 1 --stage pretrain
 * One table of options drives parsing, --help, config files (--config FILE.ini; flags given
 * on the command line override the file) and the argument table printed at start. */
#ifndef TIMIREC_RUN_H
#define TIMIREC_RUN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    /* main.py */
    const char *model_name, *gpu, *log_file;
    int64_t verbose, random_seed, load, train, regenerate;
    /* reader */
    const char *path, *dataset, *sep;
    /* runner */
    int64_t epoch, check_epoch, test_epoch, early_stop, batch_size, eval_batch_size;
    int64_t num_workers, pin_memory;
    double lr, l2;
    const char *optimizer, *topk, *metric;
    /* model */
    const char *model_path, *stage;
    int64_t buffer, num_neg, test_all, history_max, emb_size, attn_size, K, add_pos, add_trm;
    int64_t n_layers;
    double dropout, temp;
    /* timirec's own */
    const char *config, *model_dir, *log_dir, *json_log, *per_user_metrics;
    int64_t threads, resume, detect_anomaly, eval_users, cache;
} run_args_t;

/* Parse argv (argv[0] the program): defaults, then --config FILE, then the flags. Returns 0,
 * 1 when --help was printed, -1 with a message naming the flag and its accepted range. */
int run_args_parse(run_args_t *a, int argc, char **argv, char *err, size_t errlen);

/* The training run (what `python main.py ...` does). Returns the process exit code. */
int run_main(int argc, char **argv);

/* timirec recommend (argv[0] = "recommend"): top-K lists per user from a checkpoint. */
int recommend_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
