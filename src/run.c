/* The reference's command line and training run (docs/MODEL.md, "Training loop"; README, "Training:
 * the reference's command line"): argument table, data, model, epochs with dev evaluation, best-dev
 * checkpoints, the reference's early stop, reload of the best model and the final test; logs in the
 * reference's shape plus JSON lines.
 *
 * Robustness: a memory estimate before anything large is allocated (a run that cannot fit is
 * refused); a resumable state (<model_path>.state, train_state.h) written at the end of every
 * epoch and when SIGINT/SIGTERM stops training after the current batch; --resume 1 continues
 * from it bit for bit; a NaN or Inf stops training with the step and the tensor named.
 * Exit codes: 0 done; 1 an error (data, files); 2 a refused request (options, a state of
 * another configuration, not enough memory); 3 a non-finite value stopped training;
 * 128 + signal number (130 SIGINT, 143 SIGTERM) interrupted, state saved.
 * Test hooks (environment, for tests/cli_resume.sh): TIMIREC_TEST_STOP_AFTER=N acts as a
 * SIGINT after N batches of this process; TIMIREC_TEST_NAN=NAME:STEP writes a NaN into the
 * first element of parameter NAME just before step STEP (0-based). */
#include "timirec/run.h"

#include "timirec/backend.h"
#include "timirec/checkpoint.h"
#include "timirec/common.h"
#include "timirec/comm.h"
#include "timirec/corpus.h"
#include "timirec/corpus_cache.h"
#include "timirec/dist.h"
#include "timirec/memplan.h"
#include "timirec/metrics.h"
#include "timirec/options.h"
#include "timirec/train_state.h"
#include "timirec/trainer.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- the one option table ---------------------------------------------------------------- */

#define BIG 2e9
static int build_table(run_args_t *a, opt_t *t) {
    int n = 0;
#define S(name, help) t[n++] = (opt_t){#name, OPT_STR, &a->name, 0, 0, help}
#define I(name, lo, hi, help) t[n++] = (opt_t){#name, OPT_INT, &a->name, lo, hi, help}
#define F(name, lo, hi, help) t[n++] = (opt_t){#name, OPT_FLOAT, &a->name, lo, hi, help}
    S(model_name, "model to run (TiMiRec)");
    S(config, "config file of option = value lines; flags given here override it");
    S(stage, "training stage: pretrain / finetune");
    S(path, "input data dir");
    S(dataset, "dataset folder");
    S(sep, "column separator of the csv files");
    I(emb_size, 4, 256, "size of embedding vectors (multiple of 4)");
    I(attn_size, 1, 256, "size of attention vectors");
    I(K, 1, 64, "number of hidden interests");
    I(add_pos, 0, 1, "add position embeddings in the extractor");
    I(add_trm, 0, 1, "add the transformer layer in the extractor");
    F(temp, 1e-6, 1e6, "temperature of the distillation loss");
    I(n_layers, 1, 8, "layers of the interest projection");
    I(history_max, 1, 512, "maximum length of history");
    I(num_neg, 1, 1000, "negative items per training instance");
    F(dropout, 0, 1, "accepted for compatibility: the projection's dropout is 0.5, as in the reference");
    I(test_all, 0, 1, "rank the target against every item (full ranking)");
    I(eval_users, 0, BIG, "with --test_all 1: rank the dev/test instances of a seeded sample of this many users (0: all)");
    I(epoch, 0, 100000, "number of epochs");
    I(check_epoch, 0, 100000, "print the intent distributions every check_epoch epochs (0: never)");
    I(test_epoch, -1, 100000, "print test results every test_epoch epochs (-1: never)");
    I(early_stop, 0, 100000, "epochs of non-increasing dev results that stop training (0: never)");
    F(lr, 0, 10, "learning rate");
    F(l2, 0, 10, "weight decay (coupled L2) of non-bias parameters");
    I(batch_size, 1, 1 << 20, "batch size during training");
    I(eval_batch_size, 1, 1 << 20, "batch size during evaluation");
    S(optimizer, "optimizer: Adam (the reference's, dense) or LazyAdam (the item tables' rows "
                 "updated only when a batch touches them, each with its own step count)");
    S(topk, "cut-offs of the metrics; the first is the dev one");
    S(metric, "metrics: NDCG, HR, MRR; the first at the first topk is the main one");
    I(random_seed, 0, BIG, "seed of every random draw");
    I(load, 0, 1, "load the model from model_path before training");
    I(train, 0, 1, "train the model (0: evaluate only)");
    I(resume, 0, 1, "continue from <model_path>.state, saved every epoch and on SIGINT/SIGTERM");
    I(detect_anomaly, 0, 1, "check gradients and intermediate outputs for NaN/Inf every step");
    S(model_path, "checkpoint path (default <model_dir>TiMiRec/<run name>.safetensors)");
    S(log_file, "log path (default <log_dir>TiMiRec/<run name>.txt)");
    S(model_dir, "folder of the default checkpoint paths (the reference's ../model/)");
    S(log_dir, "folder of the default log paths (the reference's ../log/)");
    S(json_log, "JSON-lines record of the run (default: the log file's name with .jsonl)");
    S(per_user_metrics, "after the test: TSV of every test instance (user_id, item_id, rank, each metric at each topk)");
    I(threads, 0, 1024, "CPU threads (0: all cores)");
    S(gpu, "CUDA_VISIBLE_DEVICES of the CUDA backend, as the reference: \"0\" the first GPU "
           "(the CPU, with a warning, when none is usable); \"\" (default): the CPU");
    I(verbose, 0, 50, "accepted for compatibility (logging level)");
    I(regenerate, 0, 1, "rebuild the dataset cache (<path>/<dataset>/" CORPUS_CACHE_FILE ") even when valid");
    I(cache, 0, 1, "keep a binary cache of the parsed dataset beside the CSVs (0: parse them every time)");
    I(num_workers, 0, 1024, "accepted for compatibility");
    I(pin_memory, 0, 1, "accepted for compatibility");
    I(buffer, 0, 1, "accepted for compatibility");
#undef S
#undef I
#undef F
    return n;
}
#define MAX_OPTS 64

static void defaults(run_args_t *a) {
    memset(a, 0, sizeof *a);
    a->model_name = "TiMiRec";
    a->gpu = "";
    a->log_file = "";
    a->verbose = 20;
    a->train = 1;
    a->path = "../data/";
    a->dataset = "Grocery_and_Gourmet_Food";
    a->sep = "\t";
    a->epoch = 200;
    a->check_epoch = 1;
    a->test_epoch = -1;
    a->early_stop = 10;
    a->batch_size = 256;
    a->eval_batch_size = 256;
    a->num_workers = 5;
    a->lr = 1e-3;
    a->optimizer = "Adam";
    a->topk = "5,10,20,50";
    a->metric = "NDCG,HR";
    a->model_path = "";
    a->stage = "finetune";
    a->buffer = 1;
    a->num_neg = 1;
    a->history_max = 20;
    a->emb_size = 64;
    a->attn_size = 8;
    a->K = 2;
    a->add_pos = 1;
    a->add_trm = 1;
    a->temp = 1;
    a->n_layers = 1;
    a->config = "";
    a->model_dir = "../model/";
    a->log_dir = "../log/";
    a->json_log = "";
    a->per_user_metrics = "";
    a->cache = 1;
}

static const char *usage_text =
    "usage: timirec --model_name TiMiRec --dataset NAME [--path DIR] [--stage pretrain|finetune] "
    "[options]\n"
    "Trains TiMiRec as the reference framework does (python main.py ...): pretrain the interest\n"
    "extractor, then finetune with the interest predictor and distillation. Other commands:\n"
    "timirec recommend|data|prepare|synth|sweep|info (timirec COMMAND --help).\n"
    "Exit status: 0 done; 1 error; 2 refused (options, memory, a state of other options);\n"
    "3 NaN/Inf stopped training; 130/143 SIGINT/SIGTERM: state saved, --resume 1 continues.";

int run_args_parse(run_args_t *a, int argc, char **argv, char *err, size_t errlen) {
    defaults(a);
    opt_t table[MAX_OPTS];
    int n = build_table(a, table);
    /* --config first, so that the flags override the file whatever their order. */
    for (int i = 1; i < argc; i++) {
        const char *cfg = NULL;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) cfg = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0) cfg = argv[i] + 9;
        if (cfg && options_load_file(table, n, cfg, err, errlen)) return -1;
    }
    int rc = options_parse(table, n, argc, argv, 1, NULL, 0, NULL, err, errlen);
    if (rc == 1) {
        options_usage(usage_text, table, n, stdout);
        return 1;
    }
    if (rc) return -1;
    if (strcmp(a->model_name, "TiMiRec") != 0)
        return tmr_error(err, errlen, "--model_name: %s is not available (timirec runs TiMiRec)",
                         a->model_name);
    if (strcmp(a->stage, "pretrain") != 0 && strcmp(a->stage, "finetune") != 0)
        return tmr_error(err, errlen, "--stage: \"%s\" must be pretrain or finetune", a->stage);
    if (strcmp(a->optimizer, "Adam") != 0 && strcmp(a->optimizer, "LazyAdam") != 0)
        return tmr_error(err, errlen, "--optimizer: \"%s\" is not available (Adam or LazyAdam)",
                         a->optimizer);
    if (strcmp(a->sep, "\\t") == 0) a->sep = "\t";
    if (strlen(a->sep) != 1)
        return tmr_error(err, errlen, "--sep: must be one character, got \"%s\"", a->sep);
    if (a->emb_size % 4) return tmr_error(err, errlen, "--emb_size: %lld is not a multiple of 4",
                                          (long long)a->emb_size);
    metric_spec_t spec;
    if (a->eval_users && !a->test_all)
        return tmr_error(err, errlen, "--eval_users: sampling %lld users needs full-catalog evaluation "
                         "(--test_all 1)", (long long)a->eval_users);
    if (metrics_parse(a->metric, a->topk, &spec, err, errlen)) return -1;
    return 0;
}

/* ---- names as the reference forms them ----------------------------------------------------- */

/* Python's str() of a float: shortest round-trip digits, "1e-06", "0.0001", "0.5", "1.0". */
static void py_float(double v, char *out, size_t n) {
    if (v == floor(v) && fabs(v) < 1e16) {
        snprintf(out, n, "%.1f", v);
        return;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(out, n, "%.*g", p, v);
        if (strtod(out, NULL) == v) return;
    }
}

/* The reference's defaults of l2, temp and dropout are Python ints (0, 1, 0): printed "0" and
 * "1" unless a value was given. */
static void py_num(double v, double int_default, char *out, size_t n) {
    if (v == int_default) snprintf(out, n, "%.0f", v);
    else py_float(v, out, n);
}

static void run_name(const run_args_t *a, char *out, size_t n) {
    char lr[32], l2[32], temp[32];
    py_float(a->lr, lr, sizeof lr);
    py_num(a->l2, 0, l2, sizeof l2);
    py_num(a->temp, 1, temp, sizeof temp);
    snprintf(out, n, "TiMiRec__%s__%lld__lr=%s__l2=%s__emb_size=%lld__attn_size=%lld__K=%lld__"
             "temp=%s__add_pos=%lld__add_trm=%lld__n_layers=%lld", a->dataset,
             (long long)a->random_seed, lr, l2, (long long)a->emb_size, (long long)a->attn_size,
             (long long)a->K, temp, (long long)a->add_pos, (long long)a->add_trm,
             (long long)a->n_layers);
}

static void extractor_path(const run_args_t *a, char *out, size_t n) {
    snprintf(out, n, "%sTiMiRec/Extractor__%s__%lld__emb_size=%lld__K=%lld__add_pos=%lld__"
             "add_trm=%lld.safetensors", a->model_dir, a->dataset, (long long)a->random_seed,
             (long long)a->emb_size, (long long)a->K, (long long)a->add_pos, (long long)a->add_trm);
}

/* ---- logging: stdout and the log file, JSON lines beside ------------------------------------ */

typedef struct {
    FILE *log, *json;
    int quiet; /* a data-parallel rank other than 0: nothing printed or written */
} logs_t;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void logline(logs_t *L, const char *fmt, ...) {
    if (L->quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    if (L->log) {
        va_start(ap, fmt);
        vfprintf(L->log, fmt, ap);
        va_end(ap);
        fputc('\n', L->log);
        fflush(L->log);
    }
}

static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

/* {"NDCG@5": 0.1, ...} for the given spec. */
static void json_metrics(FILE *f, const metric_spec_t *spec, const double *v) {
    fputc('{', f);
    for (int m = 0; m < spec->n_kind; m++)
        for (int t = 0; t < spec->n_topk; t++)
            fprintf(f, "%s\"%s@%d\": %.6f", m || t ? ", " : "", metrics_kind_name(spec->kind[m]),
                    spec->topk[t], v[m * spec->n_topk + t]);
    fputc('}', f);
}

/* The argument table, as the reference prints it: sorted names, values cut at 20 chars. */
static void arg_table(logs_t *L, const opt_t *table, int n) {
    static const char *exclude[] = {"check_epoch", "log_file", "model_path", "path", "pin_memory",
                                    "load", "regenerate", "sep", "train", "verbose", "metric",
                                    "test_epoch", "buffer", "model_name", "config", "model_dir",
                                    "log_dir", "json_log", "resume", "per_user_metrics", "cache"};
    int idx[MAX_OPTS], m = 0;
    for (int i = 0; i < n; i++) {
        int skip = 0;
        for (size_t e = 0; e < sizeof exclude / sizeof *exclude; e++)
            skip |= strcmp(table[i].name, exclude[e]) == 0;
        if (!skip) idx[m++] = i;
    }
    for (int i = 1; i < m; i++) /* insertion sort by name (ASCII, as Python's sorted) */
        for (int j = i; j > 0 && strcmp(table[idx[j - 1]].name, table[idx[j]].name) > 0; j--) {
            int t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    char values[MAX_OPTS][32];
    int kw = 9, vw = 6;
    for (int i = 0; i < m; i++) {
        const opt_t *o = &table[idx[i]];
        char v[256];
        if (o->kind == OPT_INT) snprintf(v, sizeof v, "%lld", (long long)*(int64_t *)o->value);
        else if (o->kind == OPT_FLOAT) py_float(*(double *)o->value, v, sizeof v);
        else snprintf(v, sizeof v, "%s", *(const char **)o->value);
        if (strlen(v) > 20) strcpy(v + 17, "...");
        snprintf(values[i], sizeof values[i], "%.31s", v); /* v was cut to 20 above */
        if ((int)strlen(o->name) > kw) kw = (int)strlen(o->name);
        if ((int)strlen(v) > vw) vw = (int)strlen(v);
    }
    char bar[128];
    int w = kw + vw + 5;
    memset(bar, '=', (size_t)w);
    bar[w] = 0;
    logline(L, "%s", bar);
    logline(L, " %-*s | %-*s ", kw, "Arguments", vw, "Values");
    logline(L, "%s", bar);
    for (int i = 0; i < m; i++) logline(L, " %-*s | %-*s", kw, table[idx[i]].name, vw, values[i]);
    logline(L, "%s", bar);
}

static void now_string(char *out, size_t n) {
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%d %H:%M:%S", &tm);
}

/* Which epoch is the best, as the reference's runner (ReChorus, helpers/BaseRunner.py)
 * decides it; every use here goes through these two. It saves the model whenever the dev main
 * metric is at least every earlier one (max(results) == results[-1]), so on a tie the
 * checkpoint holds the LATER epoch: is_saved_best. It prints "Best Iter(dev)" at np.argmax,
 * the FIRST epoch of the maximum, and its early stop counts the epochs since that first
 * maximum: first_best. */
static int is_saved_best(const double *dev_main, int e) {
    for (int i = 0; i < e; i++)
        if (!(dev_main[i] <= dev_main[e])) return 0;
    return 1;
}

static int first_best(const double *dev_main, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (dev_main[i] > dev_main[best]) best = i;
    return best;
}

/* The epoch whose parameters the best checkpoint holds (1-based; 0: none), as the run saved
 * them. */
static int saved_epoch_of(const double *dev_main, int n) {
    int saved = 0;
    for (int e = 0; e < n; e++)
        if (is_saved_best(dev_main, e)) saved = e + 1;
    return saved;
}

/* The reference's early stop: more than 20 epochs and the last `early_stop` dev values
 * non-increasing, or more than 20 epochs since the first best. */
static int should_stop(const double *main_metric, int n, int early_stop) {
    if (early_stop <= 0) return 0;
    if (n > 20) {
        int non_increasing = 1;
        int from = n - early_stop < 0 ? 0 : n - early_stop;
        for (int i = from + 1; i < n; i++) non_increasing &= main_metric[i - 1] >= main_metric[i];
        if (non_increasing) return 1;
    }
    return n - first_best(main_metric, n) > 20;
}

/* The run's configuration as JSON (checkpoint metadata and the JSON log). Without --resume:
 * how a run got to its checkpoint does not change the checkpoint's bytes. */
static void config_json(const opt_t *table, int n, char *out, size_t cap) {
    size_t k = (size_t)snprintf(out, cap, "{");
    for (int i = 0, first = 1; i < n && k < cap; i++) {
        const opt_t *o = &table[i];
        if (strcmp(o->name, "resume") == 0) continue;
        k += (size_t)snprintf(out + k, cap - k, "%s\"%s\": ", first ? "" : ", ", o->name);
        first = 0;
        if (k >= cap) break;
        if (o->kind == OPT_INT) k += (size_t)snprintf(out + k, cap - k, "%lld", (long long)*(int64_t *)o->value);
        else if (o->kind == OPT_FLOAT) k += (size_t)snprintf(out + k, cap - k, "%.17g", *(double *)o->value);
        else {
            const char *s = *(const char **)o->value;
            k += (size_t)snprintf(out + k, cap - k, "\"");
            for (; *s && k + 8 < cap; s++) {
                if (*s == '"' || *s == '\\') out[k++] = '\\', out[k++] = *s;
                else if (*s == '\t') out[k++] = '\\', out[k++] = 't';
                else if ((unsigned char)*s >= 0x20) out[k++] = *s;
            }
            k += (size_t)snprintf(out + k, cap - k, "\"");
        }
    }
    if (k < cap) snprintf(out + k, cap - k, "}");
}

/* Mean over the last training batch of softmax(x) over K: the reference's check_epoch view. */
static void check_intents(logs_t *L, trainer_t *t) {
    const int K = t->lay.cfg.K;
    const size_t n = (size_t)t->opts.batch_size * (size_t)K;
    float *buf = tmr_malloc(tmr_mul_size(2 * n, sizeof *buf)); /* (2, batch_size, K) */
    const int B = trainer_last_intents(t, buf, buf + n);
    const char *names[2] = {"pred_intent", "target_intent"};
    const float *src[2] = {buf, buf + n};
    for (int w = 0; w < 2; w++) {
        double mean[64] = {0};
        for (int b = 0; b < B; b++) {
            const float *x = src[w] + (size_t)b * K;
            double mx = x[0], sum = 0;
            for (int k = 1; k < K; k++) mx = fmax(mx, x[k]);
            for (int k = 0; k < K; k++) sum += exp(x[k] - mx);
            for (int k = 0; k < K; k++) mean[k] += exp(x[k] - mx) / sum / B;
        }
        char line[2048];
        size_t m = (size_t)snprintf(line, sizeof line, "%s\t(%d, %d) mean softmax [", names[w], B, K);
        for (int k = 0; k < K && m < sizeof line; k++)
            m += (size_t)snprintf(line + m, sizeof line - m, k ? " %.4f" : "%.4f", mean[k]);
        if (m < sizeof line) snprintf(line + m, sizeof line - m, "]");
        logline(L, "%s", line);
    }
    free(buf);
}

/* A progress bar with samples/s on a terminal (stderr), redrawn at most 10 times a second and
 * erased before the epoch's log line; nothing when stderr is not a terminal. */
typedef struct {
    int epoch;
    double start, last;
} progress_t;

static void progress_bar(void *ctx, int64_t done, int64_t total) {
    progress_t *p = ctx;
    double now = tmr_now();
    if (done < total && now - p->last < 0.1) return;
    p->last = now;
    int width = 30, filled = total ? (int)((double)done / (double)total * width) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '=' : i == filled ? '>' : ' ';
    bar[width] = 0;
    double rate = now > p->start ? (double)done / (now - p->start) : 0;
    fprintf(stderr, "\rEpoch %-4d [%s] %lld/%lld  %.0f samples/s ", p->epoch, bar, (long long)done,
            (long long)total, rate);
    if (done >= total) fprintf(stderr, "\r%*s\r", 90, "");
    fflush(stderr);
}

/* ---- interruption -------------------------------------------------------------------------- */

/* The signal that asked training to stop (0: none). The handler only records it; the trainer
 * reads it after every batch. A second SIGINT/SIGTERM ends the process at once (the state of
 * the last epoch end stays on disk). */
static volatile sig_atomic_t stop_signal = 0;

static void on_stop_signal(int sig) {
    if (stop_signal) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_signal = sig;
}

static void catch_stop_signals(int on) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on ? on_stop_signal : SIG_DFL;
    sa.sa_flags = SA_RESTART; /* a checkpoint being written when the signal comes goes on */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Options that may differ between a run and the run it resumes: they change no number of the
 * training (where files go, how many threads, how much is printed, the epoch bound). */
static const char *const resume_may_differ[] = {
    "config", "path", "model_path", "model_dir", "log_file", "log_dir", "json_log", "threads",
    "gpu", "verbose", "regenerate", "num_workers", "pin_memory", "epoch", "check_epoch",
    "test_epoch", "resume", "detect_anomaly", "per_user_metrics", "cache", NULL};

/* The test hooks of the file comment. Returns 0 or -1 with a message. */
static int read_test_hooks(trainer_t *t, char *err, size_t errlen) {
    const char *stop = getenv("TIMIREC_TEST_STOP_AFTER"), *nan = getenv("TIMIREC_TEST_NAN");
    if (stop && *stop) t->test_stop_after = strtoll(stop, NULL, 10);
    if (nan && *nan) {
        const char *colon = strrchr(nan, ':');
        if (!colon) return tmr_error(err, errlen, "TIMIREC_TEST_NAN=%s: expected NAME:STEP", nan);
        for (int i = 0; i < t->lay.n_tensors; i++)
            if (strlen(t->lay.t[i].name) == (size_t)(colon - nan) &&
                strncmp(t->lay.t[i].name, nan, (size_t)(colon - nan)) == 0)
                t->test_nan_tensor = i;
        if (t->test_nan_tensor < 0)
            return tmr_error(err, errlen, "TIMIREC_TEST_NAN=%s: no such parameter", nan);
        t->test_nan_step = strtoll(colon + 1, NULL, 10);
    }
    return 0;
}

/* Write the resumable state: the run is at batch `batch` of epoch `epoch` (0-based) with
 * n_done epochs finished, their dev values dev (n_done, METRICS_MAX_KINDS). A failure is a
 * warning: training goes on, but says the run cannot be resumed from here. */
static int save_state(const char *path, const trainer_t *t, const opt_t *table, int n_opts,
                      int64_t epoch, int64_t batch, double loss_sum, int n_done, double *dev,
                      uint64_t fingerprint) {
    char err[1024];
    train_progress_t p = {epoch, batch, loss_sum, t->step, t->adam.step, n_done,
                          METRICS_MAX_KINDS, dev, fingerprint, t->row_step};
    if (train_state_save(path, &t->lay, t->params, t->adam_m, t->adam_v, &p, table, n_opts, err,
                         sizeof err) == 0)
        return 0;
    fprintf(stderr, "timirec: warning: the resumable state was not saved: %s\n", err);
    return -1;
}

/* Training stopped on a signal in epoch `epoch` (1-based) after `batch` of its n_batches (0:
 * at its start): say where, and where the state is. Returns the exit code, 128 + signal. */
static int report_interrupt(logs_t *L, int epoch, int64_t batch, int64_t n_batches, int state_ok,
                            const char *state_path) {
    int sig = stop_signal ? (int)stop_signal : SIGINT; /* the test hook acts as SIGINT */
    char where[128];
    if (batch > 0) snprintf(where, sizeof where, "in epoch %d after batch %lld of %lld", epoch,
                            (long long)batch, (long long)n_batches);
    else snprintf(where, sizeof where, "before epoch %d", epoch);
    if (state_ok)
        logline(L, "Interrupted (%s) %s: state saved to %s; to continue, run the same command "
                "with --resume 1", sig == SIGTERM ? "SIGTERM" : "SIGINT", where, state_path);
    else
        logline(L, "Interrupted (%s) %s: the state could not be saved (see the warning above)",
                sig == SIGTERM ? "SIGTERM" : "SIGINT", where);
    if (L->json) {
        fprintf(L->json, "{\"event\": \"interrupted\", \"signal\": %d, \"epoch\": %d, "
                "\"batch\": %lld, \"state\": ", sig, epoch, (long long)batch);
        json_string(L->json, state_ok ? state_path : "");
        fprintf(L->json, "}\n");
        fflush(L->json);
    }
    return state_ok ? 128 + sig : 1;
}

/* Files "<path>.tmp.<pid>" that a writer killed mid-write left behind (st_write's temporary
 * names), whose process is gone: removed, with a log line. */
static void remove_stale_temps(logs_t *L, const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[2048];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    const char *base = slash ? slash + 1 : path;
    size_t n = strlen(base);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        const char *name = ent->d_name;
        if (strncmp(name, base, n) != 0 || strncmp(name + n, ".tmp.", 5) != 0) continue;
        char *end;
        long pid = strtol(name + n + 5, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* its writer may be alive */
        char full[4200];
        snprintf(full, sizeof full, "%s/%s", dir, name);
        if (unlink(full) == 0) logline(L, "Removed %s (left by an interrupted write)", full);
    }
    closedir(d);
}

/* ---- the run ------------------------------------------------------------------------------- */

/* Everything one run holds: run_free releases it, whatever the exit path. */
typedef struct {
    run_args_t a;
    opt_t table[MAX_OPTS], state_opts[MAX_OPTS]; /* state_opts: every option but --resume */
    int n_opts, n_state_opts, pretrain;
    char default_log[2048], default_model[2048], extractor[2048], json_path[2100];
    char state_path[2100];
    const char *log_path, *model_path;
    logs_t L;
    char *cfg_json;                /* the configuration as JSON (checkpoints, the JSON log) */
    comm_t *comm;                  /* the ranks of a data-parallel run (dist.h); rank 0 alone
                                      logs and writes checkpoints and the state */
    int rank, n_ranks;
    uint64_t start_rss;            /* resident besides the dataset once read (memplan_run) */
    corpus_t c;
    metric_spec_t spec, dev_spec;  /* dev_spec: the first top-k only, as the reference */
    model_config_t cfg;
    train_opts_t to;
    trainer_t t;
    train_progress_t prog;         /* the state resumed from */
    int resumed;
    double *dev_main;              /* (epochs) the dev main metric of every finished epoch */
    double (*dev_values)[METRICS_MAX_KINDS]; /* (epochs, kinds) their dev values */
    int n_done;                    /* epochs finished */
    int saved_epoch;               /* the epoch the best checkpoint holds, 1-based (0: none) */
    char err[4096];
} run_t;

/* The error in r->err on stderr; returns the exit code rc. A data-parallel run stops every
 * rank: the others would wait for this one at their next collective. */
static int fail(run_t *r, int rc) {
    if (r->n_ranks > 1) comm_abort(r->comm, rc, "error: %s", r->err);
    fprintf(stderr, "timirec: error: %s\n", r->err);
    return rc;
}

/* The command line, the option table and where files go. Returns 0, or the exit code: -1
 * after --help (exit 0), 2 for a refused command line. */
static int run_parse(run_t *r, int argc, char **argv) {
    run_args_t *a = &r->a;
    int prc = run_args_parse(a, argc, argv, r->err, sizeof r->err);
    if (prc == 1) return -1;
    if (prc == 0 && a->resume && !a->train)
        prc = tmr_error(r->err, sizeof r->err, "--resume 1 continues training: it needs --train 1");
    if (prc) return fail(r, 2);
    r->n_opts = build_table(a, r->table);
    for (int i = 0; i < r->n_opts; i++)
        if (strcmp(r->table[i].name, "resume") != 0) r->state_opts[r->n_state_opts++] = r->table[i];
    if (a->threads > 0) omp_set_num_threads((int)a->threads);
    r->pretrain = strcmp(a->stage, "pretrain") == 0;

    char name[1024];
    run_name(a, name, sizeof name);
    snprintf(r->default_log, sizeof r->default_log, "%sTiMiRec/%s.txt", a->log_dir, name);
    snprintf(r->default_model, sizeof r->default_model, "%sTiMiRec/%s.safetensors", a->model_dir,
             name);
    extractor_path(a, r->extractor, sizeof r->extractor);
    r->log_path = *a->log_file ? a->log_file : r->default_log;
    /* The reference's pretrain stage always saves to the extractor path. */
    r->model_path = r->pretrain ? r->extractor : *a->model_path ? a->model_path : r->default_model;
    snprintf(r->state_path, sizeof r->state_path, "%s.state", r->model_path);
    if (*a->json_log) snprintf(r->json_path, sizeof r->json_path, "%s", a->json_log);
    else {
        snprintf(r->json_path, sizeof r->json_path, "%s", r->log_path);
        char *dot = strrchr(r->json_path, '.');
        char *slash = strrchr(r->json_path, '/');
        if (dot && (!slash || dot > slash)) *dot = 0;
        strncat(r->json_path, ".jsonl", sizeof r->json_path - strlen(r->json_path) - 1);
    }
    return 0;
}

/* Open the log and the JSON log (a failure is a warning) and write the run's start. */
static void run_open_logs(run_t *r) {
    r->cfg_json = tmr_malloc(16384);
    config_json(r->table, r->n_opts, r->cfg_json, 16384);
    r->L.quiet = r->rank != 0;
    if (r->L.quiet) return;
    if (tmr_make_parent_dirs(r->log_path, r->err, sizeof r->err) ||
        tmr_make_parent_dirs(r->json_path, r->err, sizeof r->err))
        fprintf(stderr, "timirec: warning: %s\n", r->err);
    r->L.log = fopen(r->log_path, "a");
    if (!r->L.log)
        fprintf(stderr, "timirec: warning: cannot write the log %s: %s\n", r->log_path,
                strerror(errno));
    r->L.json = fopen(r->json_path, "a");
    char when[64];
    now_string(when, sizeof when);
    logline(&r->L, "--------------------------------------------- BEGIN: %s ---------------------------------------------", when);
    arg_table(&r->L, r->table, r->n_opts);
    if (r->L.json) {
        fprintf(r->L.json, "{\"event\": \"start\", \"time\": ");
        json_string(r->L.json, when);
        fprintf(r->L.json, ", \"config\": %s}\n", r->cfg_json);
        fflush(r->L.json);
    }
}

/* The dataset and the metrics. Returns 0 or the exit code. */
static int run_load_data(run_t *r) {
    const run_args_t *a = &r->a;
    corpus_opts_t co = {.path = a->path, .dataset = a->dataset, .sep = a->sep[0],
                        .cache = !a->cache ? CORPUS_CACHE_OFF
                                 : a->regenerate ? CORPUS_CACHE_REBUILD : CORPUS_CACHE_ON};
    logline(&r->L, "Reading data from \"%s\", dataset = \"%s\" ", a->path, a->dataset);
    double t_read = tmr_now();
    const uint64_t rss_before = memplan_resident_bytes();
    if (corpus_load(&co, &r->c, r->err, sizeof r->err)) return fail(r, 1);
    /* Held besides the corpus: the process's start, and what parsing the CSVs (a first load)
     * left in the allocator's pools. */
    const uint64_t rss_after = memplan_resident_bytes(), data = memplan_corpus_bytes(&r->c);
    r->start_rss = rss_after > rss_before + data ? rss_after - data : rss_before;
    const corpus_t *c = &r->c;
    if (c->cache_note[0]) logline(&r->L, "%s", c->cache_note);
    int64_t entries = c->phase[0].n_rows + c->phase[1].n_rows + c->phase[2].n_rows;
    logline(&r->L, "\"# user\": %d, \"# item\": %d, \"# entry\": %lld [%.2f s]", c->n_users - 1,
            c->n_items - 1, (long long)entries, tmr_now() - t_read);
    /* Sampled-negative evaluation needs each dev/test row's candidates; full-catalog
     * evaluation (--test_all 1) needs none, so files without them are valid there. */
    for (int p = PHASE_DEV; p <= PHASE_TEST; p++)
        if (!a->test_all && c->phase[p].n_neg == 0) {
            fprintf(stderr, "timirec: error: %s/%s/%s.csv has %s: evaluation with sampled "
                    "negatives (--test_all 0) ranks each row among them; add a neg_items column "
                    "(timirec prepare --neg_items N, timirec synth --negatives N) or rank against "
                    "the full catalog with --test_all 1\n", a->path, a->dataset, corpus_phase_names[p],
                    c->phase[p].has_neg ? "empty neg_items lists" : "no neg_items column");
            return 1;
        }
    metrics_parse(a->metric, a->topk, &r->spec, r->err, sizeof r->err);
    r->dev_spec = r->spec;
    r->dev_spec.n_topk = 1;
    return 0;
}

/* The memory the run needs, estimated from the shapes before anything large is allocated:
 * logged, or the run refused when the machine has less. Returns 0 or the exit code. */
static int run_check_memory(run_t *r) {
    const run_args_t *a = &r->a;
    model_config_t full = r->cfg;
    full.n_items = r->c.n_items;
    full.history_max = r->to.history_max;
    if (model_config_check(&full, r->err, sizeof r->err)) return fail(r, 2);
    model_layout_t lay;
    model_layout_build(&full, &lay);
    mem_plan_t plan;
    memplan_run(&lay, &r->c, &r->to, (int)a->test_all, omp_get_max_threads(), r->start_rss, &plan);
    uint64_t machine = memplan_machine_bytes();
    char tot[32], par[32], ws[32], ev[32], bat[32], smp[32], cor[32], prg[32], mach[32];
    char all_line[96] = "";
    memplan_format(plan.total, tot, sizeof tot);
    memplan_format(plan.params, par, sizeof par);
    memplan_format(plan.workspace, ws, sizeof ws);
    memplan_format(plan.batches, bat, sizeof bat);
    memplan_format(plan.sampler, smp, sizeof smp);
    memplan_format(plan.corpus, cor, sizeof cor);
    memplan_format(plan.process, prg, sizeof prg);
    if (a->test_all)
        snprintf(all_line, sizeof all_line, ", test_all evaluation %s",
                 memplan_format(plan.eval_all, ev, sizeof ev));
    if (machine) memplan_format(machine, mach, sizeof mach);
    else snprintf(mach, sizeof mach, "unknown");
    char parts[512];
    snprintf(parts, sizeof parts, "parameters, gradients and Adam moments %s, model workspace "
             "%s%s, batches %s, sampler %s, data %s, program %s", par, ws, all_line, bat, smp, cor,
             prg);
    if (machine && plan.total > machine) {
        fprintf(stderr, "timirec: error: this run needs about %s of memory (%s), but this "
                "machine has %s: lower --batch_size, --eval_batch_size, --history_max or "
                "--emb_size%s\n", tot, parts, mach, a->test_all ? " (or --test_all 0)" : "");
        return 2;
    }
    char line[1024];
    snprintf(line, sizeof line, "about %s (%s); this machine has %s", tot, parts, mach);
    logline(&r->L, "Memory: %s", line);
    return 0;
}

/* The model's configuration and the trainer on its backend. Returns 0 or the exit code. */
static int run_build_trainer(run_t *r) {
    const run_args_t *a = &r->a;
    r->cfg = (model_config_t){.stage = r->pretrain ? STAGE_PRETRAIN : STAGE_FINETUNE,
                              .emb_size = (int)a->emb_size, .attn_size = (int)a->attn_size,
                              .K = (int)a->K, .add_pos = (int)a->add_pos,
                              .add_trm = (int)a->add_trm, .n_layers = (int)a->n_layers,
                              .temp = a->temp,
                              .dropout = 0.5 /* nn.Dropout(p=0.5) in the reference, whatever --dropout */};
    train_opts_t *to = &r->to;
    train_opts_default(to);
    to->batch_size = (int)a->batch_size;
    to->eval_batch_size = (int)a->eval_batch_size;
    to->history_max = (int)a->history_max;
    to->num_neg = (int)a->num_neg;
    to->lr = a->lr;
    to->l2 = a->l2;
    to->seed = (uint64_t)a->random_seed;
    to->eval_users = a->eval_users;
    to->use_gpu = a->gpu[0] != '\0';
    to->lazy_adam = strcmp(a->optimizer, "LazyAdam") == 0;
    /* As the reference does; a data-parallel rank keeps a CUDA_VISIBLE_DEVICES its launcher
     * set (one GPU per rank: README, "Data-parallel training"). */
    if (to->use_gpu) setenv("CUDA_VISIBLE_DEVICES", a->gpu, r->n_ranks > 1 ? 0 : 1);
    int rc = run_check_memory(r);
    if (rc) return rc;
    trainer_t *t = &r->t;
    if (trainer_init(t, &r->c, &r->cfg, to, r->err, sizeof r->err)) return fail(r, 2);
    logline(&r->L, "Device: %s", t->device);
    if (to->use_gpu) {
        logline(&r->L, "Backend: %s", t->backend);
        if (t->be == &trainer_backend_cpu)
            fprintf(stderr, "timirec: warning: --gpu %s: training on the %s\n", a->gpu, t->backend);
    }
    t->detect_anomaly = (int)a->detect_anomaly;
    if (read_test_hooks(t, r->err, sizeof r->err)) return fail(r, 2);
    if (r->n_ranks > 1) {
        if (t->be != &trainer_backend_cpu && to->lazy_adam) {
            snprintf(r->err, sizeof r->err, "data-parallel training on the GPU backend takes "
                     "--optimizer Adam (LazyAdam's touched rows are not exchanged there yet)");
            return fail(r, 2);
        }
        char why[256];
        dist_attach(t, r->comm, why, sizeof why);
        logline(&r->L, "Data-parallel: %s; each rank trains 1/%d of every batch of %d; item-table "
                "gradients exchanged as %s%s", comm_describe(r->comm), r->n_ranks,
                (int)a->batch_size, why,
                t->be == &trainer_backend_cpu ? "" : "; GPU gradients summed through the host");
    }
    return 0;
}

/* --resume 1: the state at state_path, when there is one, into the trainer and r->prog.
 * Returns 0 or the exit code. */
static int run_resume_state(run_t *r) {
    trainer_t *t = &r->t;
    if (access(r->state_path, F_OK) != 0) {
        logline(&r->L, "No state to resume at %s: training from the start", r->state_path);
        fprintf(stderr, "timirec: note: --resume 1 found no state at %s: training from the "
                "start\n", r->state_path);
        return 0;
    }
    if (train_state_load(r->state_path, &t->lay, t->params, t->adam_m, t->adam_v, &r->prog,
                         train_state_fingerprint(&r->c), r->state_opts, r->n_state_opts,
                         resume_may_differ, r->err, sizeof r->err))
        return fail(r, 2);
    if (r->prog.n_values != METRICS_MAX_KINDS) {
        fprintf(stderr, "timirec: error: %s holds %d dev values per epoch, this build "
                "keeps %d\n", r->state_path, r->prog.n_values, METRICS_MAX_KINDS);
        return 2;
    }
    if ((r->prog.row_step != NULL) != (t->row_step != NULL)) { /* the option check covers it */
        fprintf(stderr, "timirec: error: %s %s LazyAdam's per-row step counts, this run uses "
                "%s\n", r->state_path, r->prog.row_step ? "holds" : "lacks", r->a.optimizer);
        return 2;
    }
    if (t->row_step)
        memcpy(t->row_step, r->prog.row_step,
               (size_t)adam_lazy_rows(&t->lay) * sizeof *t->row_step);
    r->resumed = 1;
    t->step = r->prog.step;
    t->adam.step = r->prog.adam_step;
    return 0;
}

/* The parameters the run starts from: a resumed state, the pretrained extractor (finetune),
 * --load 1's checkpoint. Returns 0 or the exit code. */
static int run_restore(run_t *r) {
    const run_args_t *a = &r->a;
    trainer_t *t = &r->t;
    int rc = 0;
    if (a->resume) rc = run_resume_state(r);
    else if (a->train && access(r->state_path, F_OK) == 0)
        logline(&r->L, "Note: %s holds the state of an earlier run; this run starts afresh and "
                "replaces it (--resume 1 continues it instead)", r->state_path);
    if (rc) return rc;
    if (!r->pretrain && !r->resumed) {
        int n_loaded = 0;
        if (access(r->extractor, R_OK) == 0) {
            if (checkpoint_load(r->extractor, &t->lay, t->params, 0, &n_loaded, r->err,
                                sizeof r->err))
                return fail(r, 1);
            logline(&r->L, "Load model from %s (%d tensors)", r->extractor, n_loaded);
        } else {
            logline(&r->L, "Train from scratch!");
        }
    }
    logline(&r->L, "#params: %lld", (long long)t->lay.total);
    logline(&r->L, "Optimizer: %s", a->optimizer);
    if (a->load && !r->resumed) {
        if (checkpoint_load(r->model_path, &t->lay, t->params, 1, NULL, r->err, sizeof r->err))
            return fail(r, 1);
        logline(&r->L, "Load model from %s", r->model_path);
    }
    return 0;
}

/* A non-finite value stopped training (err): say so, and what the best checkpoint holds.
 * Returns the exit code 3. */
static int report_nonfinite_stop(run_t *r) {
    char ck[2400];
    if (r->saved_epoch)
        snprintf(ck, sizeof ck, "the best checkpoint %s (epoch %d) is left as it was",
                 r->model_path, r->saved_epoch);
    else snprintf(ck, sizeof ck, "no checkpoint was written yet");
    logline(&r->L, "Training stopped: %s; %s", r->err, ck);
    fprintf(stderr, "timirec: error: training stopped: %s; %s; the last saved state is %s\n",
            r->err, ck, access(r->state_path, F_OK) == 0 ? r->state_path : "(none)");
    if (r->L.json) {
        fprintf(r->L.json, "{\"event\": \"nonfinite\", \"message\": ");
        json_string(r->L.json, r->err);
        fprintf(r->L.json, "}\n");
        fflush(r->L.json);
    }
    return 3;
}

/* Train epoch e (0-based) from *cur. Returns 0 when it completed, else the exit code. */
static int run_train_epoch(run_t *r, int e, epoch_cursor_t *cur, uint64_t fingerprint) {
    trainer_t *t = &r->t;
    progress_t bar = {e + 1, tmr_now(), 0};
    if (r->rank == 0 && isatty(2)) {
        t->progress = progress_bar;
        t->progress_ctx = &bar;
    }
    int st = trainer_train_epoch(t, &r->c, (uint32_t)e, cur, r->err, sizeof r->err);
    t->progress = NULL;
    t->progress_ctx = NULL;
    if (st == TRAIN_ERROR) return fail(r, 1);
    if (st == TRAIN_NONFINITE) return report_nonfinite_stop(r);
    if (st == TRAIN_INTERRUPTED) {
        int state_ok = r->rank != 0 ||
                       save_state(r->state_path, t, r->state_opts, r->n_state_opts, e, cur->batch,
                                  cur->loss_sum, r->n_done, r->dev_values[0], fingerprint) == 0;
        return report_interrupt(&r->L, e + 1, cur->batch, cur->n_batches, state_ok, r->state_path);
    }
    return 0;
}

/* Epoch e's evaluation, its log line, the best checkpoint and the resumable state. Returns 0,
 * or the exit code (an error, or a stop asked for during the evaluation). */
static int run_end_epoch(run_t *r, int e, const epoch_cursor_t *cur, double train_s,
                         uint64_t fingerprint) {
    const run_args_t *a = &r->a;
    trainer_t *t = &r->t;
    const double loss = cur->n_batches ? cur->loss_sum / (double)cur->n_batches : 0.0;
    char line[4096], res[2048];
    if (!r->pretrain && a->check_epoch > 0 && e % a->check_epoch == 0) check_intents(&r->L, t);
    double t0 = tmr_now();
    /* Zeroed: the state keeps METRICS_MAX_KINDS values per epoch, whatever --metric fills. */
    double dv[METRICS_MAX_KINDS * METRICS_MAX_TOPK] = {0}, tv[METRICS_MAX_KINDS * METRICS_MAX_TOPK];
    trainer_evaluate(t, &r->c, PHASE_DEV, (int)a->test_all, &r->dev_spec, dv);
    r->dev_main[e] = dv[0];
    memcpy(r->dev_values[e], dv, sizeof r->dev_values[e]);
    r->n_done = e + 1;
    metrics_format(&r->dev_spec, dv, res, sizeof res);
    int n = snprintf(line, sizeof line, "Epoch %-5d loss=%.4f [%-3.1f s]    dev=(%s)", e + 1,
                     loss, train_s, res);
    int tested = a->test_epoch > 0 && e % a->test_epoch == 0;
    if (tested) {
        trainer_evaluate(t, &r->c, PHASE_TEST, (int)a->test_all, &r->dev_spec, tv);
        metrics_format(&r->dev_spec, tv, res, sizeof res);
        n += snprintf(line + n, sizeof line - (size_t)n, " test=(%s)", res);
    }
    double eval_s = tmr_now() - t0;
    n += snprintf(line + n, sizeof line - (size_t)n, " [%.1f s]", eval_s);
    const int best = is_saved_best(r->dev_main, e);
    if (best) {
        if (r->rank == 0 &&
            checkpoint_save(r->model_path, &t->lay, t->params, r->cfg_json, r->err, sizeof r->err))
            return fail(r, 1);
        r->saved_epoch = e + 1;
        snprintf(line + n, sizeof line - (size_t)n, " *");
    }
    logline(&r->L, "%s", line);
    if (r->L.json) {
        fprintf(r->L.json, "{\"event\": \"epoch\", \"epoch\": %d, \"loss\": %.6f, \"train_s\": %.3f, "
                "\"samples_per_s\": %.1f, \"eval_s\": %.3f, \"dev\": ", e + 1, loss, train_s,
                (double)cur->samples / train_s, eval_s);
        json_metrics(r->L.json, &r->dev_spec, dv);
        if (tested) {
            fprintf(r->L.json, ", \"test\": ");
            json_metrics(r->L.json, &r->dev_spec, tv);
        }
        fprintf(r->L.json, ", \"best\": %s}\n", best ? "true" : "false");
        fflush(r->L.json);
    }
    /* After the checkpoint: a kill -9 from here on loses at most this epoch. */
    int state_ok = r->rank != 0 ||
                   save_state(r->state_path, t, r->state_opts, r->n_state_opts, e + 1, 0, 0.0,
                              r->n_done, r->dev_values[0], fingerprint) == 0;
    if (stop_signal || (t->test_stop_after > 0 && t->batches_run >= t->test_stop_after))
        return report_interrupt(&r->L, e + 2, 0, 0, state_ok, r->state_path);
    return 0;
}

/* The dev history of a resumed run, its log lines, and a check that the best checkpoint it
 * points to is there and readable. Returns 0 or the exit code. */
static int run_resume_history(run_t *r) {
    r->n_done = (int)r->prog.n_dev;
    for (int e = 0; e < r->n_done; e++) {
        memcpy(r->dev_values[e], r->prog.dev + (size_t)e * METRICS_MAX_KINDS,
               sizeof r->dev_values[e]);
        r->dev_main[e] = r->dev_values[e][0];
    }
    r->saved_epoch = saved_epoch_of(r->dev_main, r->n_done);
    logline(&r->L, "Resume from %s: %d epochs done, epoch %lld from batch %lld (step %lld)",
            r->state_path, r->n_done, (long long)r->prog.epoch + 1, (long long)r->prog.batch + 1,
            (long long)r->prog.step);
    if (r->saved_epoch > 0) {
        float *scratch = tmr_malloc(tmr_mul_size((size_t)r->t.lay.total, sizeof *scratch));
        int bad = checkpoint_load(r->model_path, &r->t.lay, scratch, 1, NULL, r->err,
                                  sizeof r->err);
        free(scratch);
        if (bad) {
            fprintf(stderr, "timirec: error: cannot resume: the best checkpoint of epoch %d is "
                    "unreadable: %s\n", r->saved_epoch, r->err);
            return 1;
        }
    }
    if (r->L.json) {
        fprintf(r->L.json, "{\"event\": \"resume\", \"state\": ");
        json_string(r->L.json, r->state_path);
        fprintf(r->L.json, ", \"epoch\": %lld, \"batch\": %lld, \"step\": %lld}\n",
                (long long)r->prog.epoch + 1, (long long)r->prog.batch, (long long)r->prog.step);
        fflush(r->L.json);
    }
    return 0;
}

/* The epochs (--train 1): each trained, evaluated on dev, the best checkpointed, the state
 * saved; the reference's early stop; then the best checkpoint reloaded. Returns 0 or the
 * exit code. */
static int run_train(run_t *r) {
    const run_args_t *a = &r->a;
    trainer_t *t = &r->t;
    int64_t cap = (a->epoch > r->prog.n_dev ? a->epoch : r->prog.n_dev) + 1;
    r->dev_main = tmr_calloc((size_t)cap, sizeof *r->dev_main);
    r->dev_values = tmr_calloc((size_t)cap, sizeof *r->dev_values);
    if (r->resumed) {
        int rc = run_resume_history(r);
        if (rc) return rc;
    }
    epoch_cursor_t start = {r->resumed ? r->prog.batch : 0, r->resumed ? r->prog.loss_sum : 0, 0, 0};
    uint64_t fingerprint = train_state_fingerprint(&r->c);
    logline(&r->L, "Resumable state: %s (every epoch end and on SIGINT/SIGTERM)", r->state_path);
    if (r->rank == 0) { /* another rank would race rank 0's own temporary files */
        remove_stale_temps(&r->L, r->model_path);
        remove_stale_temps(&r->L, r->state_path);
    }
    double t_start = tmr_now();
    t->stop = &stop_signal;
    catch_stop_signals(1);
    for (int e = r->n_done;; e++) {
        if (e > 0 && should_stop(r->dev_main, e, (int)a->early_stop)) {
            logline(&r->L, "Early stop at %d based on dev result.", e);
            break;
        }
        if (e >= a->epoch) break;
        double t0 = tmr_now();
        epoch_cursor_t cur = start;
        start = (epoch_cursor_t){0, 0, 0, 0};
        int rc = run_train_epoch(r, e, &cur, fingerprint);
        if (!rc) rc = run_end_epoch(r, e, &cur, tmr_now() - t0, fingerprint);
        if (rc) return rc;
    }
    catch_stop_signals(0);
    t->stop = NULL;
    if (r->n_done > 0) {
        char res[2048];
        int best = first_best(r->dev_main, r->n_done);
        metrics_format(&r->dev_spec, r->dev_values[best], res, sizeof res);
        logline(&r->L, "\nBest Iter(dev)=%5d\t dev=(%s) [%.1f s] ", best + 1, res, tmr_now() - t_start);
        int64_t written = 1; /* rank 0 has written the checkpoint every rank reads next */
        comm_max_i64(r->comm, &written, 1, "checkpoint written");
        if (checkpoint_load(r->model_path, &t->lay, t->params, 1, NULL, r->err, sizeof r->err))
            return fail(r, 1);
        logline(&r->L, "Load model from %s", r->model_path);
    }
    return 0;
}

/* The final test with the loaded (or best) parameters, and --per_user_metrics. Returns 0 or
 * the exit code. */
static int run_final_test(run_t *r) {
    const run_args_t *a = &r->a;
    char res[2048], when[64];
    double tv[METRICS_MAX_KINDS * METRICS_MAX_TOPK];
    double t0 = tmr_now();
    trainer_evaluate(&r->t, &r->c, PHASE_TEST, (int)a->test_all, &r->spec, tv);
    double eval_s = tmr_now() - t0;
    metrics_format(&r->spec, tv, res, sizeof res);
    logline(&r->L, "\nTest After Training: (%s)", res);
    if (r->L.json) {
        fprintf(r->L.json, "{\"event\": \"test\", \"stage\": \"%s\", \"model_path\": ", a->stage);
        json_string(r->L.json, r->model_path);
        fprintf(r->L.json, ", \"metrics\": ");
        json_metrics(r->L.json, &r->spec, tv);
        fprintf(r->L.json, ", \"eval_s\": %.3f, \"eval_instances\": %lld}\n", eval_s, (long long)r->t.n_eval);
    }
    if (*a->per_user_metrics && r->rank == 0) {
        const corpus_phase_t *ph = &r->c.phase[PHASE_TEST];
        const int64_t n = r->t.n_eval; /* the evaluated instances (all, or --eval_users' sample) */
        int64_t *rows = tmr_malloc(tmr_mul_size((size_t)n + 1, sizeof *rows));
        for (int64_t i = 0; i < n; i++) rows[i] = ph->inst_row[r->t.eval_index[i]];
        int bad = metrics_write_per_instance(a->per_user_metrics, &r->spec, ph->user, ph->item, rows,
                                             r->t.ranks, n, r->err, sizeof r->err);
        free(rows);
        if (bad) return fail(r, 1);
        logline(&r->L, "Per-user test metrics (%lld instances) written to %s", (long long)n,
                a->per_user_metrics);
    }
    now_string(when, sizeof when);
    logline(&r->L, "\n--------------------------------------------- END: %s ---------------------------------------------", when);
    return 0;
}

/* The one way out of a run: everything it holds released. */
static void run_free(run_t *r) {
    catch_stop_signals(0);
    if (r->L.log) fclose(r->L.log);
    if (r->L.json) fclose(r->L.json);
    free(r->cfg_json);
    free(r->dev_main);
    free(r->dev_values);
    train_progress_free(&r->prog);
    trainer_free(&r->t);
    corpus_free(&r->c);
    comm_finalize(r->comm);
    free(r);
}

int run_main(int argc, char **argv) {
    run_t *r = tmr_calloc(1, sizeof *r);
    int rc = run_parse(r, argc, argv);
    if (rc) {
        free(r);
        return rc < 0 ? 0 : rc;
    }
    if (comm_init(NULL, NULL, &r->comm, r->err, sizeof r->err)) {
        rc = fail(r, 1);
        free(r);
        return rc;
    }
    r->rank = comm_rank(r->comm);
    r->n_ranks = comm_size(r->comm);
    run_open_logs(r);
    rc = run_load_data(r);
    if (!rc) rc = run_build_trainer(r);
    if (!rc) rc = run_restore(r);
    if (!rc && r->a.train) rc = run_train(r);
    if (!rc) rc = run_final_test(r);
    run_free(r);
    return rc;
}
