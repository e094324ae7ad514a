/* timirec sweep (include/timirec/sweep.h): a grid of run flags, every combination and seed
 * run as a child process of this binary (fork + exec of /proc/self/exe), so a failing or
 * crashing point is recorded and the sweep goes on. One child at a time, or with --gpus one per
 * listed GPU (--gpu ID, as the reference sets CUDA_VISIBLE_DEVICES); --gpu is not a shared
 * setting, so base.ini and the rows do not depend on --gpus.
 *
 * DIR (--out) holds:
 *   base.ini          the settings every run shares: the --config file's run options and the
 *                     flags passed through, one "name = value" a line (a resumed sweep must
 *                     have the same; the grid and the seeds may grow)
 *   sweep.csv         one row per run, rewritten (temporary file + rename) after every run
 *   runs/<point>__seed=S/{model/, pretrain.log, pretrain.jsonl, pretrain.err, finetune.*}
 *   plot_<key>.{png,svg,dat,gp}   metric and throughput against each grid key
 * Each run's numbers come from its JSON-lines log (run.c --json_log, read by jsonl.h), never
 * from its text; the table is a csv_table.h table, the figures plot.h's. */
#include "timirec/sweep.h"

#include "timirec/common.h"
#include "timirec/csv_table.h"
#include "timirec/jsonl.h"
#include "timirec/metrics.h"
#include "timirec/options.h"
#include "timirec/plot.h"
#include "timirec/run.h"
#include "timirec/text.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- grid ---------------------------------------------------------------------------------- */

static text_span_t trim(const char *s, size_t n) { return text_trim((text_span_t){s, n}); }

/* The values "v1,v2,..." in [v, vend) of key k (named key for messages). 0 or -1. */
static int grid_add_values(sweep_grid_t *g, int k, text_span_t key, const char *v, const char *vend,
                           char *err, size_t errlen) {
    for (;;) {
        const char *comma = memchr(v, ',', (size_t)(vend - v));
        const char *ve = comma ? comma : vend;
        text_span_t val = trim(v, (size_t)(ve - v));
        v = ve + 1;
        int val_ok = val.n > 0;
        for (size_t i = 0; i < val.n; i++) val_ok &= !isspace((unsigned char)val.s[i]);
        if (!val_ok)
            return tmr_error(err, errlen, "--grid: key %.*s has an empty or blank value", (int)key.n,
                             key.s);
        if (g->n_values[k] == SWEEP_MAX_VALUES)
            return tmr_error(err, errlen, "--grid: more than %d values for %.*s", SWEEP_MAX_VALUES,
                             (int)key.n, key.s);
        for (int j = 0; j < g->n_values[k]; j++)
            if (strlen(g->value[k][j]) == val.n && memcmp(g->value[k][j], val.s, val.n) == 0)
                return tmr_error(err, errlen, "--grid: value %.*s of %.*s appears twice", (int)val.n,
                                 val.s, (int)key.n, key.s);
        g->value[k][g->n_values[k]++] = tmr_strndup(val.s, val.n);
        if (!comma) return 0;
    }
}

/* One element "key=v1,v2" (trimmed, non-empty) of the grid. 0 or -1. */
static int grid_add_key(sweep_grid_t *g, text_span_t part, char *err, size_t errlen) {
    const char *eq = memchr(part.s, '=', part.n);
    if (!eq)
        return tmr_error(err, errlen, "--grid: \"%.*s\" has no \"=\" (write key=v1,v2,...)",
                         (int)part.n, part.s);
    text_span_t key = trim(part.s, (size_t)(eq - part.s));
    if (key.n >= 2 && key.s[0] == '-' && key.s[1] == '-') key.s += 2, key.n -= 2;
    int key_ok = key.n > 0;
    for (size_t i = 0; i < key.n; i++) key_ok &= isalnum((unsigned char)key.s[i]) || key.s[i] == '_';
    if (!key_ok)
        return tmr_error(err, errlen, "--grid: \"%.*s\" is not a flag name", (int)key.n, key.s);
    if (g->n_keys == SWEEP_MAX_KEYS)
        return tmr_error(err, errlen, "--grid: more than %d keys", SWEEP_MAX_KEYS);
    for (int k = 0; k < g->n_keys; k++)
        if (strlen(g->key[k]) == key.n && memcmp(g->key[k], key.s, key.n) == 0)
            return tmr_error(err, errlen, "--grid: key %.*s appears twice", (int)key.n, key.s);
    int k = g->n_keys++;
    g->key[k] = tmr_strndup(key.s, key.n);
    return grid_add_values(g, k, key, eq + 1, part.s + part.n, err, errlen);
}

int sweep_grid_parse(const char *text, sweep_grid_t *g, char *err, size_t errlen) {
    memset(g, 0, sizeof *g);
    const char *p = text, *end = text + strlen(text);
    while (p <= end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *e = semi ? semi : end;
        text_span_t part = trim(p, (size_t)(e - p));
        p = e + 1;
        if (part.n == 0) {
            if (!semi && g->n_keys > 0) break; /* a trailing ';' */
            tmr_error(err, errlen, "--grid \"%s\": empty element (write key=v1,v2;key2=...)", text);
            goto fail;
        }
        if (grid_add_key(g, part, err, errlen)) goto fail;
        if (!semi) break;
    }
    if (g->n_keys == 0) return tmr_error(err, errlen, "--grid is empty (write key=v1,v2;key2=...)");
    g->n_points = 1;
    for (int k = 0; k < g->n_keys; k++) g->n_points *= g->n_values[k];
    return 0;
fail:
    sweep_grid_free(g);
    return -1;
}

void sweep_grid_free(sweep_grid_t *g) {
    for (int k = 0; k < g->n_keys; k++) {
        free(g->key[k]);
        for (int j = 0; j < g->n_values[k]; j++) free(g->value[k][j]);
    }
    memset(g, 0, sizeof *g);
}

void sweep_grid_point(const sweep_grid_t *g, int64_t p, int *idx) {
    for (int k = g->n_keys - 1; k >= 0; k--) {
        idx[k] = (int)(p % g->n_values[k]);
        p /= g->n_values[k];
    }
}

/* ---- the results table (sweep.csv) --------------------------------------------------------- */

/* sweep.csv and where its columns are. */
typedef struct {
    csv_table_t csv;
    int c_seed, c_stage, c_status, c_why, c_epochs, c_best, c_dev0, c_test0, c_train_s, c_eval_s,
        c_sps, c_wall, c_dir;
    int n_keys, n_dev, n_test;
} results_t;

/* Columns: grid keys, seed, stage, status, why, epochs, best_epoch, dev_<metric at the first
 * topk>..., test_<metric@k>..., train_s, eval_s, samples_per_s, wall_s, run_dir. */
static void results_init(results_t *t, const sweep_grid_t *g, const metric_spec_t *spec) {
    memset(t, 0, sizeof *t);
    csv_table_t *csv = &t->csv;
    char name[64];
    for (int k = 0; k < g->n_keys; k++) csv_table_add_col(csv, g->key[k]);
    t->n_keys = g->n_keys;
    t->c_seed = csv_table_add_col(csv, "seed");
    t->c_stage = csv_table_add_col(csv, "stage");
    t->c_status = csv_table_add_col(csv, "status");
    t->c_why = csv_table_add_col(csv, "why");
    t->c_epochs = csv_table_add_col(csv, "epochs");
    t->c_best = csv_table_add_col(csv, "best_epoch");
    t->c_dev0 = csv->n_cols;
    for (int m = 0; m < spec->n_kind; m++) {
        snprintf(name, sizeof name, "dev_%s@%d", metrics_kind_name(spec->kind[m]), spec->topk[0]);
        csv_table_add_col(csv, name);
        t->n_dev++;
    }
    t->c_test0 = csv->n_cols;
    for (int m = 0; m < spec->n_kind; m++)
        for (int k = 0; k < spec->n_topk; k++) {
            snprintf(name, sizeof name, "test_%s@%d", metrics_kind_name(spec->kind[m]), spec->topk[k]);
            csv_table_add_col(csv, name);
            t->n_test++;
        }
    t->c_train_s = csv_table_add_col(csv, "train_s");
    t->c_eval_s = csv_table_add_col(csv, "eval_s");
    t->c_sps = csv_table_add_col(csv, "samples_per_s");
    t->c_wall = csv_table_add_col(csv, "wall_s");
    t->c_dir = csv_table_add_col(csv, "run_dir");
}

/* Row of (key values, seed, stage), or -1. */
static int results_find(const results_t *t, char *const *keyvals, const char *seed, const char *stage) {
    for (int i = 0; i < t->csv.n_rows; i++) {
        char **r = t->csv.row[i];
        int same = strcmp(r[t->c_seed], seed) == 0 && strcmp(r[t->c_stage], stage) == 0;
        for (int k = 0; same && k < t->n_keys; k++) same = strcmp(r[k], keyvals[k]) == 0;
        if (same) return i;
    }
    return -1;
}

/* The status of row i: "ok", "failed" or "skipped". */
static const char *results_status(const results_t *t, int i) { return t->csv.row[i][t->c_status]; }

/* Take ownership of row (n_cols strings): replaces the row with the same key or appends. */
static void results_put(results_t *t, char **row) {
    int i = results_find(t, row, row[t->c_seed], row[t->c_stage]);
    if (i >= 0) csv_table_replace(&t->csv, i, row);
    else csv_table_append(&t->csv, row);
}

/* Load an existing sweep.csv; its header must be this sweep's. 0 (also when there is no file)
 * or -1 with a message. A row with the key of an earlier one replaces it. */
static int results_load(results_t *t, const char *path, char *err, size_t errlen) {
    int rc = csv_table_load(&t->csv, path, err, errlen);
    if (rc == -2)
        return tmr_error(err, errlen, "%s has other columns than this sweep writes (another grid's "
                         "keys or other metrics): use another --out", path);
    if (rc) return rc;
    char ***rows = t->csv.row;
    int n = t->csv.n_rows;
    t->csv.row = NULL;
    t->csv.n_rows = t->csv.cap_rows = 0;
    for (int i = 0; i < n; i++) results_put(t, rows[i]);
    free(rows);
    return 0;
}

/* ---- child processes ----------------------------------------------------------------------- */

#define MAX_GPUS 64 /* --gpus: runs at once */

static volatile sig_atomic_t g_stop_signal = 0;
static volatile pid_t g_child[MAX_GPUS]; /* the running child of each slot (GPU), 0 when none */

/* SIGINT/SIGTERM: remember it and pass it on to the running children; the sweep stops after
 * they end, without recording the interrupted runs. */
static void on_stop_signal(int sig) {
    g_stop_signal = sig;
    for (int i = 0; i < MAX_GPUS; i++)
        if (g_child[i] > 0) kill(g_child[i], sig);
}

static void install_signals(void) {
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    /* A background job of a non-interactive shell ignores SIGINT: keep it that way. */
    if (sigaction(SIGINT, NULL, &old) == 0 && old.sa_handler != SIG_IGN) sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Start exe with argv as the child of slot, stdout to out_path, stderr to err_path. Returns its
 * pid, or -1 when it could not be started (message in err). */
static pid_t start_child(const char *exe, char **argv, const char *out_path, const char *err_path,
                         int slot, char *err, size_t errlen) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return tmr_error(err, errlen, "fork: %s", strerror(errno));
    if (pid == 0) {
        int fo = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        int fe = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0) _exit(126);
        close(fo);
        close(fe);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        execv(exe, argv);
        fprintf(stderr, "timirec sweep: cannot run %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    g_child[slot] = pid;
    if (g_stop_signal) kill(pid, g_stop_signal); /* a signal that came just before the fork */
    return pid;
}

/* Last non-blank line of a file (at most n-1 bytes of it), "" when none. */
static void last_line(const char *path, char *out, size_t n) {
    out[0] = 0;
    char *buf, e[256];
    size_t len;
    if (text_read_file(path, &buf, &len, e, sizeof e)) return;
    const char *p = buf, *end = buf + len;
    text_span_t line, last = {NULL, 0};
    while (text_next_line(&p, end, &line))
        if (!text_is_blank(line)) last = line;
    if (last.s) {
        last = text_trim(last);
        snprintf(out, n, "%.*s", (int)last.n, last.s);
    }
    free(buf);
}

static int mkdirs(const char *dir, char *err, size_t errlen) {
    char *path = tmr_strf("%s/x", dir);
    int rc = tmr_make_parent_dirs(path, err, errlen);
    free(path);
    return rc;
}

/* ---- the sweep's own options and the settings every run shares ----------------------------- */

typedef struct {
    const char *config, *grid, *seeds, *out, *stages, *plot_metric, *gpus;
    int64_t max_runs, retry_failed, plots;
} sweep_opts_t;

#define N_SWEEP_OPTS 10
static void sweep_table(sweep_opts_t *o, opt_t *t) {
    opt_t table[N_SWEEP_OPTS] = {
        {"config", OPT_STR, &o->config, 0, 0,
         "run config (name = value lines); it may also hold grid, seeds, out, stages"},
        {"grid", OPT_STR, &o->grid, 0, 0, "flags to vary: \"K=1,2,4;history_max=20,50\""},
        {"seeds", OPT_STR, &o->seeds, 0, 0, "random seeds, e.g. 0,1,2 (default: the run's random_seed)"},
        {"out", OPT_STR, &o->out, 0, 0, "output folder: sweep.csv, plots, one folder per run"},
        {"stages", OPT_STR, &o->stages, 0, 0, "stages of every point, in order: pretrain,finetune"},
        {"max_runs", OPT_INT, &o->max_runs, 0, 1e9, "stop after this many runs (0: no limit); "
                                                    "the same command resumes"},
        {"retry_failed", OPT_INT, &o->retry_failed, 0, 1, "run failed points again when resuming"},
        {"plots", OPT_INT, &o->plots, 0, 1, "draw plots with gnuplot when it is installed"},
        {"plot_metric", OPT_STR, &o->plot_metric, 0, 0,
         "test metric of the plots, e.g. HR@10 (default: the main metric)"},
        {"gpus", OPT_STR, &o->gpus, 0, 0,
         "GPU ids, e.g. 0,1: that many runs at once, each given --gpu ID, one run per GPU at a "
         "time (default: one run at a time)"},
    };
    memcpy(t, table, sizeof table);
}

static const char *usage_text =
    "usage: timirec sweep --config FILE.ini --grid \"K=1,2,4;history_max=20,50\" [--seeds 0,1,2]\n"
    "                     --out DIR [any training flag, passed to every run]\n"
    "Runs every combination of the grid (and every seed) through the stages, each run a child\n"
    "process with its own model and log folders under DIR/runs/. A failing run is recorded as\n"
    "failed (with why) and the sweep goes on; finetune is skipped where pretrain failed.\n"
    "DIR/sweep.csv gets one row per run (settings, seed, stage, status, best epoch, dev and test\n"
    "metrics, train time, samples/s), written after every run: run the same command again to\n"
    "resume an interrupted sweep (finished runs are not redone; the grid and seeds may grow).\n"
    "--gpus 0,1,...: up to one run per listed GPU at once, each run given --gpu ID (a GPU takes\n"
    "the next run when its run ends; a point's stages run in order on one GPU); the progress\n"
    "lines name each run's GPU, and sweep.csv is the same as without --gpus (rows in grid order).\n"
    "Plots (PNG and SVG, gnuplot): the test metric and samples/s against each grid key, one line\n"
    "per combination of the other keys, mean over seeds with min-max bars.\n"
    "Exit: 0 all runs ok, 1 some failed, 2 usage error, 128+signal when interrupted.";

/* Grid keys the sweep sets itself or that would make runs share files. */
static const char *reserved_keys[] = {"stage", "random_seed", "model_dir", "log_dir", "log_file",
                                      "json_log", "model_path", "config", "metric", "topk"};

static int is_sweep_key(const opt_t *t, const char *name, size_t n) {
    for (int i = 0; i < N_SWEEP_OPTS; i++)
        if (strlen(t[i].name) == n && memcmp(t[i].name, name, n) == 0) return 1;
    return 0;
}

/* Settings text ("name = value\n" lines): append one. */
static void settings_add(char **s, size_t *len, const char *name, size_t nn, const char *value,
                         size_t vn) {
    *s = tmr_realloc(*s, *len + nn + vn + 5);
    *len += (size_t)sprintf(*s + *len, "%.*s = %.*s\n", (int)nn, name, (int)vn, value);
}

/* The --config file: sweep options go to sweep_argv (as "--name=value"), run options to the
 * settings text. */
static int split_config(const char *path, const opt_t *st, char **settings, size_t *slen,
                        char ***sweep_argv, int *sweep_argc, char *err, size_t errlen) {
    char *buf;
    size_t len;
    if (text_read_file(path, &buf, &len, err, errlen)) return -1;
    const char *p = buf, *end = buf + len;
    text_span_t line;
    int line_no = 0;
    while (text_next_line(&p, end, &line)) {
        line_no++;
        text_span_t l = text_trim(line);
        if (l.n == 0 || l.s[0] == '#' || l.s[0] == ';' || l.s[0] == '[') continue;
        const char *eq = memchr(l.s, '=', l.n);
        if (!eq) {
            free(buf);
            return tmr_error(err, errlen, "%s:%d: expected \"name = value\", got \"%.*s\"", path,
                             line_no, (int)l.n, l.s);
        }
        text_span_t name = trim(l.s, (size_t)(eq - l.s));
        text_span_t value = trim(eq + 1, (size_t)(l.s + l.n - eq - 1));
        if (name.n >= 2 && name.s[0] == '-' && name.s[1] == '-') name.s += 2, name.n -= 2;
        if (is_sweep_key(st, name.s, name.n)) {
            if (name.n == 6 && memcmp(name.s, "config", 6) == 0) {
                free(buf);
                return tmr_error(err, errlen, "%s:%d: a config file cannot name another config", path,
                                 line_no);
            }
            char *a = tmr_malloc(name.n + value.n + 4);
            sprintf(a, "--%.*s=%.*s", (int)name.n, name.s, (int)value.n, value.s);
            *sweep_argv = tmr_realloc(*sweep_argv, (size_t)(*sweep_argc + 1) * sizeof **sweep_argv);
            (*sweep_argv)[(*sweep_argc)++] = a;
        } else {
            settings_add(settings, slen, name.s, name.n, value.s, value.n);
        }
    }
    free(buf);
    return 0;
}

static int write_file(const char *path, const char *text, char *err, size_t errlen) {
    FILE *f = fopen(path, "w");
    if (!f) return tmr_error(err, errlen, "%s: cannot write: %s", path, strerror(errno));
    fputs(text, f);
    if (fclose(f) != 0) return tmr_error(err, errlen, "%s: write failed", path);
    return 0;
}

/* ---- plots --------------------------------------------------------------------------------- */

typedef struct {
    double mean, lo, hi;
    int n;
} stat_t;

static void stat_add(stat_t *s, double x) {
    if (!isfinite(x)) return;
    s->lo = s->n ? fmin(s->lo, x) : x;
    s->hi = s->n ? fmax(s->hi, x) : x;
    s->mean += x;
    s->n++;
}

/* What a figure shows. */
typedef struct {
    const char *dir;               /* DIR */
    const results_t *t;
    const sweep_grid_t *g;
    char *const *seeds, *const *stages;
    int n_seeds, n_stages;
    const char *metric_col;        /* "test_NDCG@5" */
    const char *title;             /* dataset (and anything else worth a title) */
} plot_spec_t;

/* The title of the line through point idx of the figure of key a: the other keys' values. */
static void line_title(const sweep_grid_t *g, int a, const int *idx, const char *stage, char *title) {
    size_t tl = 0;
    title[0] = 0;
    for (int k = 0; k < g->n_keys; k++)
        if (k != a && tl < 256)
            tl += (size_t)snprintf(title + tl, 256 - tl, "%s%s=%s", tl ? " " : "", g->key[k],
                                   g->value[k][idx[k]]);
    if (!title[0]) snprintf(title, 256, "%s", stage);
}

/* The rows of one line of the data file (key a through its values, the other keys at idx,
 * stage s): "x-index value metric-mean min max samples/s-mean min max seeds", one per value
 * with a successful run. Returns whether the line has a point. */
static int line_rows(FILE *fd, const plot_spec_t *ps, int a, int *idx, int s, int c_metric) {
    const results_t *t = ps->t;
    const sweep_grid_t *g = ps->g;
    int any = 0;
    for (int v = 0; v < g->n_values[a]; v++) {
        idx[a] = v;
        char *keyvals[SWEEP_MAX_KEYS];
        for (int k = 0; k < g->n_keys; k++) keyvals[k] = g->value[k][idx[k]];
        stat_t m = {0}, r = {0};
        for (int si = 0; si < ps->n_seeds; si++) {
            int i = results_find(t, keyvals, ps->seeds[si], ps->stages[s]);
            if (i < 0 || strcmp(results_status(t, i), "ok") != 0) continue;
            stat_add(&m, strtod(t->csv.row[i][c_metric], NULL));
            stat_add(&r, strtod(t->csv.row[i][t->c_sps], NULL));
        }
        if (m.n == 0 || r.n == 0) continue;
        fprintf(fd, "%d %s %.6f %.6f %.6f %.1f %.1f %.1f %d\n", v, g->value[a][v], m.mean / m.n,
                m.lo, m.hi, r.mean / r.n, r.lo, r.hi, m.n);
        any = 1;
    }
    return any;
}

/* The data file of grid key a: one block per (stage, line), a line per combination of the other
 * keys (line_rows). has[s * n_lines + l] says whether block (s, l) has a point; titles[l] names
 * line l. 0 or -1. */
static int plot_data(const plot_spec_t *ps, int a, const char *dat, int *has, char (*titles)[256]) {
    const sweep_grid_t *g = ps->g;
    FILE *fd = fopen(dat, "w");
    if (!fd) return -1;
    int c_metric = csv_table_col(&ps->t->csv, ps->metric_col), idx[SWEEP_MAX_KEYS];
    int n_lines = (int)(g->n_points / g->n_values[a]), block = 0;
    fprintf(fd, "# %s: x index, value, %s mean, min, max over seeds, samples/s mean, min, max, "
                "seeds; one block per (stage, line)\n", g->key[a], ps->metric_col);
    for (int s = 0; s < ps->n_stages; s++) {
        int line = 0;
        for (int64_t p = 0; p < g->n_points; p++) {
            sweep_grid_point(g, p, idx);
            if (idx[a] != 0) continue; /* each combination of the other keys once */
            line_title(g, a, idx, ps->stages[s], titles[line]);
            fprintf(fd, "# block %d: %s, %s\n", block, ps->stages[s], titles[line]);
            has[s * n_lines + line] = line_rows(fd, ps, a, idx, s, c_metric);
            fprintf(fd, "\n\n");
            block++;
            line++;
        }
    }
    return fclose(fd) == 0 ? 0 : -1;
}

/* The gnuplot script of key a: a 2 x n_stages grid of panels (rows: the metric, samples/s;
 * columns: stages), a line per combination of the other keys that has a point. 0 or -1. */
static int plot_script(const plot_spec_t *ps, int a, const char *gp, const char *dat,
                       const char *png, const char *svg, const int *has, char (*titles)[256]) {
    const sweep_grid_t *g = ps->g;
    int n_lines = (int)(g->n_points / g->n_values[a]), n_panels = 2 * ps->n_stages;
    const char *metric = ps->metric_col + 5; /* without "test_" */
    plot_panel_t *panel = tmr_calloc((size_t)n_panels, sizeof *panel);
    plot_line_t *lines = tmr_calloc((size_t)n_panels * (size_t)n_lines, sizeof *lines);
    char **text = tmr_calloc((size_t)n_panels, sizeof *text);
    for (int p = 0; p < n_panels; p++) {
        int s = p % ps->n_stages, metric_row = p < ps->n_stages;
        plot_panel_t *pn = &panel[p];
        text[p] = metric_row ? tmr_strf("%s: test %s", ps->stages[s], metric)
                             : tmr_strf("%s: training samples/s", ps->stages[s]);
        pn->title = text[p];
        pn->ylabel = metric_row ? metric : "samples/s";
        pn->y_from_zero = !metric_row; /* throughput from 0: the eye compares heights */
        pn->col_y = metric_row ? 3 : 6, pn->col_lo = pn->col_y + 1, pn->col_hi = pn->col_y + 2;
        pn->line = lines + (size_t)p * (size_t)n_lines;
        for (int l = 0; l < n_lines; l++)
            if (has[s * n_lines + l])
                lines[(size_t)p * (size_t)n_lines + (size_t)pn->n_lines++] =
                    (plot_line_t){titles[l], s * n_lines + l, l + 1};
    }
    char *title = ps->n_seeds > 1
                      ? tmr_strf("%s: test %s and training throughput against %s (mean of %d seeds; "
                                 "bars: min to max)", ps->title, metric, g->key[a], ps->n_seeds)
                      : tmr_strf("%s: test %s and training throughput against %s (seed %s)", ps->title,
                                 metric, g->key[a], ps->seeds[0]);
    plot_figure_t fig = {"timirec sweep", title, g->key[a], dat, g->n_values[a], 2, ps->n_stages,
                         ps->n_stages > 1 ? 1200 : 700, 800, "no successful runs", panel};
    int rc = plot_write_script(&fig, gp, png, svg);
    for (int p = 0; p < n_panels; p++) free(text[p]);
    free(text);
    free(title);
    free(lines);
    free(panel);
    return rc;
}

/* One figure per grid key with at least 2 values: DIR/plot_<key>.{dat,gp} always, .png and
 * .svg when draw is set (gnuplot installed). Returns the number of figures drawn. */
static int make_plots(const plot_spec_t *ps, int draw) {
    const sweep_grid_t *g = ps->g;
    int figures = 0;
    for (int a = 0; a < g->n_keys; a++) {
        if (g->n_values[a] < 2) continue;
        char *dat = tmr_strf("%s/plot_%s.dat", ps->dir, g->key[a]);
        char *gp = tmr_strf("%s/plot_%s.gp", ps->dir, g->key[a]);
        char *png = tmr_strf("%s/plot_%s.png", ps->dir, g->key[a]);
        char *svg = tmr_strf("%s/plot_%s.svg", ps->dir, g->key[a]);
        char *log = tmr_strf("%s/plot_%s.log", ps->dir, g->key[a]);
        int n_lines = (int)(g->n_points / g->n_values[a]);
        int *has = tmr_calloc((size_t)ps->n_stages * (size_t)n_lines, sizeof *has);
        char (*titles)[256] = tmr_calloc((size_t)n_lines, sizeof *titles);
        if (plot_data(ps, a, dat, has, titles) || plot_script(ps, a, gp, dat, png, svg, has, titles)) {
            fprintf(stderr, "timirec sweep: warning: cannot write %s or %s: %s\n", dat, gp,
                    strerror(errno));
        } else if (draw) {
            unlink(png);
            if (plot_run_gnuplot(gp, log) && access(png, R_OK) == 0) {
                printf("plot: %s and .svg\n", png);
                figures++;
            } else {
                char e[512];
                last_line(log, e, sizeof e);
                fprintf(stderr, "timirec sweep: warning: gnuplot failed on %s: %s (see %s)\n", gp, e, log);
            }
        }
        free(has);
        free(titles);
        free(dat);
        free(gp);
        free(png);
        free(svg);
        free(log);
    }
    return figures;
}

/* ---- the command --------------------------------------------------------------------------- */

/* A list "a,b,c" into malloc'd strings (trimmed, non-empty); returns the count, or -1 (nothing
 * kept) for an empty element or more than max. */
static int split_list(const char *s, char **out, int max) {
    int n = 0;
    const char *p = s;
    for (;;) {
        size_t len = strcspn(p, ",");
        text_span_t v = trim(p, len);
        if (v.n == 0 || n == max) {
            while (n > 0) free(out[--n]);
            return -1;
        }
        out[n++] = tmr_strndup(v.s, v.n);
        if (!p[len]) break;
        p += len + 1;
    }
    return n;
}

/* Folder-name-safe copy: anything but [A-Za-z0-9._=-] becomes '_'. */
static void safe_name(char *s) {
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("._=-", *s)) *s = '_';
}

/* "K=2 history_max=50" (sep " ") or the run folder "runs/K=2__history_max=50__seed=0"
 * (sep "__", with a seed; folder-safe characters only). */
static char *point_name(const sweep_grid_t *g, char *const *keyvals, const char *sep,
                        const char *seed) {
    char *s = tmr_strf("%s", seed ? "runs/" : "");
    for (int k = 0; k <= g->n_keys; k++) {
        if (k == g->n_keys && !seed) break;
        char *part = k < g->n_keys ? tmr_strf("%s=%s", g->key[k], keyvals[k]) : tmr_strf("seed=%s", seed);
        if (seed) safe_name(part);
        char *next = tmr_strf("%s%s%s", s, k ? sep : "", part);
        free(part);
        free(s);
        s = next;
    }
    return s;
}

/* One run of one stage in a child process, from run_start to run_finish. */
typedef struct {
    char *dir, *json, *log, *err_f; /* DIR/RUN, DIR/RUN/S.jsonl, S.log, S.err */
    double t0;                      /* when it started (tmr_now) */
} run_job_t;

/* Start one run of one stage as the child of slot: `timirec <the shared settings as flags>
 * --<key>=<value>... --stage S --random_seed N --model_dir DIR/RUN/model/ --log_file DIR/RUN/S.log
 * --json_log DIR/RUN/S.jsonl [--gpu ID]`, stderr to DIR/RUN/S.err. Flags rather than --config:
 * the argument table in each run's log shows every setting. Returns the child's pid, or 0 when
 * it could not be started (*why, malloc'd, says why; the run failed). */
static pid_t run_start(const char *exe, const char *out, char *const *shared, int n_shared,
                       const sweep_grid_t *g, char *const *keyvals, const char *seed,
                       const char *stage, const char *run_dir, const char *gpu, int slot,
                       run_job_t *job, char **why) {
    char err[4096];
    char *dir = tmr_strf("%s/%s", out, run_dir);
    *job = (run_job_t){dir, tmr_strf("%s/%s.jsonl", dir, stage), tmr_strf("%s/%s.log", dir, stage),
                       tmr_strf("%s/%s.err", dir, stage), tmr_now()};
    char **cargv = tmr_malloc(((size_t)n_shared + SWEEP_MAX_KEYS + 12) * sizeof *cargv);
    int ca = 0;
    cargv[ca++] = tmr_strf("timirec");
    for (int i = 0; i < n_shared; i++) cargv[ca++] = tmr_strf("%s", shared[i]);
    for (int k = 0; k < g->n_keys; k++) cargv[ca++] = tmr_strf("--%s=%s", g->key[k], keyvals[k]);
    cargv[ca++] = tmr_strf("--stage=%s", stage);
    cargv[ca++] = tmr_strf("--random_seed=%s", seed);
    cargv[ca++] = tmr_strf("--model_dir=%s/model/", dir);
    cargv[ca++] = tmr_strf("--model_path=");  /* the default path, inside model_dir */
    cargv[ca++] = tmr_strf("--log_file=%s", job->log);
    cargv[ca++] = tmr_strf("--json_log=%s", job->json);
    if (gpu) cargv[ca++] = tmr_strf("--gpu=%s", gpu);
    cargv[ca] = NULL;
    pid_t pid = 0;
    *why = NULL;
    if (mkdirs(dir, err, sizeof err) == 0) {
        unlink(job->json); /* a run starts clean: no record of an interrupted earlier try */
        unlink(job->log);
        pid = start_child(exe, cargv, "/dev/null", job->err_f, slot, err, sizeof err);
    }
    if (pid <= 0) {
        pid = 0;
        *why = tmr_strf("%s", err);
    }
    for (int i = 0; i < ca; i++) free(cargv[i]);
    free(cargv);
    return pid;
}

/* The end of a run (ws: its wait status): sets *status ("ok" or "failed"), *why (malloc'd; ""
 * when ok) and res; removes an empty S.err. Returns 1 when the sweep was interrupted (nothing to
 * record), else 0. */
static int run_finish(run_job_t *job, int ws, jsonl_run_summary_t *res, const char **status,
                      char **why) {
    char err[4096], last[1000];
    *status = "failed";
    *why = NULL;
    last_line(job->err_f, last, sizeof last);
    int interrupted = g_stop_signal != 0;
    if (interrupted) *why = tmr_strf("interrupted");
    else if (WIFSIGNALED(ws))
        *why = tmr_strf("killed by signal %d (%s)%s%s", WTERMSIG(ws), strsignal(WTERMSIG(ws)),
                        *last ? ": " : "", last);
    else if (WEXITSTATUS(ws) != 0)
        *why = tmr_strf("exit %d: %s", WEXITSTATUS(ws), *last ? last : "no message");
    else if (jsonl_read_run_log(job->json, res, err, sizeof err))
        *why = tmr_strf("exit 0 but %s", err);
    else if (!res->has_test)
        *why = tmr_strf("exit 0 but no test record in %s", job->json);
    else {
        *status = "ok";
        *why = tmr_strf("%s", "");
    }
    struct stat sb;
    if (stat(job->err_f, &sb) == 0 && sb.st_size == 0) unlink(job->err_f);
    return interrupted;
}

static void run_job_free(run_job_t *job) {
    free(job->dir);
    free(job->json);
    free(job->log);
    free(job->err_f);
    memset(job, 0, sizeof *job);
}

static char *fmt_num(const char *f, double v) { return isfinite(v) ? tmr_strf(f, v) : tmr_strf("%s", ""); }

/* The sweep.csv row of one run (empty numbers where it did not succeed). */
static char **result_row(const results_t *t, char *const *keyvals, const char *seed,
                         const char *stage, const char *run_dir, const char *status,
                         const char *why, const jsonl_run_summary_t *res, double wall_s) {
    char **row = tmr_calloc((size_t)t->csv.n_cols, sizeof *row);
    int ok = strcmp(status, "ok") == 0;
    for (int k = 0; k < t->n_keys; k++) row[k] = tmr_strf("%s", keyvals[k]);
    row[t->c_seed] = tmr_strf("%s", seed);
    row[t->c_stage] = tmr_strf("%s", stage);
    row[t->c_status] = tmr_strf("%s", status);
    row[t->c_why] = tmr_strf("%s", why);
    row[t->c_epochs] = fmt_num("%.0f", ok ? res->epochs : NAN);
    row[t->c_best] = fmt_num("%.0f", ok ? res->best_epoch : NAN);
    for (int m = 0; m < t->n_dev; m++) {
        double v = NAN;
        for (int i = 0; ok && i < res->n_dev; i++)
            if (strcmp(res->dev_name[i], t->csv.col[t->c_dev0 + m] + 4) == 0) v = res->dev[i];
        row[t->c_dev0 + m] = fmt_num("%.6f", v);
    }
    for (int m = 0; m < t->n_test; m++) {
        double v = NAN;
        for (int i = 0; ok && i < res->n_test; i++)
            if (strcmp(res->test_name[i], t->csv.col[t->c_test0 + m] + 5) == 0) v = res->test[i];
        row[t->c_test0 + m] = fmt_num("%.6f", v);
    }
    row[t->c_train_s] = fmt_num("%.3f", ok ? res->train_s : NAN);
    row[t->c_eval_s] = fmt_num("%.3f", ok ? res->eval_s : NAN);
    row[t->c_sps] = fmt_num("%.1f", ok ? res->samples_per_s : NAN);
    row[t->c_wall] = fmt_num("%.2f", wall_s);
    row[t->c_dir] = tmr_strf("%s", run_dir);
    return row;
}

#define MAX_SEEDS 64

/* Everything a sweep holds; sweep_free releases it whatever was set up. */
typedef struct {
    sweep_opts_t o;
    opt_t st[N_SWEEP_OPTS];
    char **own;             /* the sweep's own flags (argv[0] first) */
    int n_own;
    char **cfg_argv;        /* the --config file's sweep options as "--name=value" */
    int cfg_argc;
    char *settings;         /* base.ini text: "name = value" lines every run shares */
    size_t settings_len;
    char **shared;          /* the same as "--name=value" flags */
    int n_shared;
    sweep_grid_t g;
    char *stages[2], *seeds[MAX_SEEDS], *gpus[MAX_GPUS];
    int n_stages, n_seeds, n_gpus;  /* n_gpus 0: no --gpus, one run at a time */
    run_args_t base;        /* the shared settings as the run parses them */
    metric_spec_t spec;
    char *plot_col;         /* "test_NDCG@5" */
    results_t t;
    char *base_ini, *csv_path, *new_ini;
} sweep_t;

static void sweep_free(sweep_t *w) {
    free(w->own);
    for (int i = 1; i < w->cfg_argc; i++) free(w->cfg_argv[i]);
    free(w->cfg_argv);
    free(w->settings);
    for (int i = 0; i < w->n_shared; i++) free(w->shared[i]);
    free(w->shared);
    sweep_grid_free(&w->g);
    for (int i = 0; i < w->n_stages; i++) free(w->stages[i]);
    for (int i = 0; i < w->n_seeds; i++) free(w->seeds[i]);
    for (int i = 0; i < w->n_gpus; i++) free(w->gpus[i]);
    free(w->plot_col);
    csv_table_free(&w->t.csv);
    free(w->base_ini);
    free(w->csv_path);
    free(w->new_ini);
}

/* "name = value" lines (comments skipped) into "--name=value" flags. */
static void settings_to_flags(sweep_t *w) {
    const char *p = w->settings, *end = w->settings + w->settings_len;
    text_span_t line;
    while (text_next_line(&p, end, &line)) {
        if (line.n == 0 || line.s[0] == '#') continue;
        const char *eq = memchr(line.s, '=', line.n);
        if (!eq) continue;
        text_span_t name = trim(line.s, (size_t)(eq - line.s));
        text_span_t value = trim(eq + 1, (size_t)(line.s + line.n - eq - 1));
        w->shared = tmr_realloc(w->shared, (size_t)(w->n_shared + 1) * sizeof *w->shared);
        w->shared[w->n_shared++] = tmr_strf("--%.*s=%.*s", (int)name.n, name.s, (int)value.n, value.s);
    }
}

/* The shared flags plus extra ones, parsed as a run would: 0 or -1 with the message. */
static int parse_as_run(const sweep_t *w, const char *extra, run_args_t *a, char *err, size_t errlen) {
    char **argv = tmr_malloc(((size_t)w->n_shared + 3) * sizeof *argv);
    int n = 0;
    argv[n++] = "timirec";
    for (int i = 0; i < w->n_shared; i++) argv[n++] = w->shared[i];
    if (extra) argv[n++] = (char *)extra;
    argv[n] = NULL;
    int rc = run_args_parse(a, n, argv, err, errlen);
    free(argv);
    return rc ? -1 : 0;
}

/* ---- setting up: each step returns -1 to go on, else the exit code (0 after --help, 2 for a
 * usage error) ---- */

/* argv: the sweep's own flags into w->own; everything else passes through to every run, as
 * "name = value" lines into *pass. */
static int sort_argv(sweep_t *w, int argc, char **argv, char **pass, size_t *pass_len) {
    w->own = tmr_malloc((size_t)(argc + 1) * sizeof *w->own);
    w->own[w->n_own++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            options_usage(usage_text, w->st, N_SWEEP_OPTS, stdout);
            return 0;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "timirec sweep: unexpected argument \"%s\" (flags are --name value)\n", a);
            return 2;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nn = eq ? (size_t)(eq - name) : strlen(name);
        if (!eq && i + 1 >= argc) {
            fprintf(stderr, "timirec sweep: --%s needs a value\n", name);
            return 2;
        }
        if (is_sweep_key(w->st, name, nn)) {
            w->own[w->n_own++] = argv[i];
            if (!eq) w->own[w->n_own++] = argv[++i];
            continue;
        }
        const char *value = eq ? eq + 1 : argv[++i];
        settings_add(pass, pass_len, name, nn, value, strlen(value));
    }
    return -1;
}

/* The sweep's options and the shared settings: the config file's sweep options first, then the
 * command line's override them; its run options go before the passed-through flags pass (which
 * override them). */
static int read_options(sweep_t *w, const char *pass, size_t pass_len) {
    sweep_opts_t *o = &w->o;
    char err[4096];
    static const char header[] = "# timirec sweep: the settings every run shares\n";
    w->settings = tmr_strf("%s", header);
    w->settings_len = sizeof header - 1;
    for (int i = 1; i < w->n_own; i++) {
        if (strcmp(w->own[i], "--config") == 0 && i + 1 < w->n_own) o->config = w->own[i + 1];
        else if (strncmp(w->own[i], "--config=", 9) == 0) o->config = w->own[i] + 9;
    }
    w->cfg_argv = tmr_malloc(sizeof *w->cfg_argv);
    w->cfg_argv[w->cfg_argc++] = w->own[0];
    int bad = *o->config && split_config(o->config, w->st, &w->settings, &w->settings_len,
                                         &w->cfg_argv, &w->cfg_argc, err, sizeof err);
    if (pass) {
        w->settings = tmr_realloc(w->settings, w->settings_len + pass_len + 1);
        memcpy(w->settings + w->settings_len, pass, pass_len + 1);
        w->settings_len += pass_len;
    }
    if (bad || options_parse(w->st, N_SWEEP_OPTS, w->cfg_argc, w->cfg_argv, 1, NULL, 0, NULL, err, sizeof err) ||
        options_parse(w->st, N_SWEEP_OPTS, w->n_own, w->own, 1, NULL, 0, NULL, err, sizeof err)) {
        fprintf(stderr, "timirec sweep: %s\n", err);
        return 2;
    }
    settings_to_flags(w);
    return -1;
}

/* --grid (no key the sweep sets itself) and --stages. */
static int check_grid_and_stages(sweep_t *w) {
    const sweep_opts_t *o = &w->o;
    char err[4096];
    if (!*o->grid || !*o->out) {
        fprintf(stderr, "timirec sweep: --grid and --out are required (timirec sweep --help)\n");
        return 2;
    }
    if (sweep_grid_parse(o->grid, &w->g, err, sizeof err)) {
        fprintf(stderr, "timirec sweep: %s\n", err);
        return 2;
    }
    const sweep_grid_t *g = &w->g;
    for (int k = 0; k < g->n_keys; k++)
        for (size_t r = 0; r < sizeof reserved_keys / sizeof *reserved_keys; r++)
            if (strcmp(g->key[k], reserved_keys[r]) == 0) {
                fprintf(stderr, "timirec sweep: --grid: %s is set by the sweep itself%s\n", g->key[k],
                        strcmp(g->key[k], "random_seed") == 0 ? " (use --seeds)" : "");
                return 2;
            }
    w->n_stages = split_list(o->stages, w->stages, 2);
    int stages_ok = w->n_stages >= 1 && !(w->n_stages == 2 && strcmp(w->stages[0], w->stages[1]) == 0);
    for (int s = 0; s < w->n_stages; s++)
        stages_ok &= strcmp(w->stages[s], "pretrain") == 0 || strcmp(w->stages[s], "finetune") == 0;
    if (!stages_ok) {
        if (w->n_stages < 0) w->n_stages = 0;
        fprintf(stderr, "timirec sweep: --stages: \"%s\" must be pretrain, finetune or both\n", o->stages);
        return 2;
    }
    return -1;
}

/* The shared settings and every grid key, checked by the run's own parser; the metrics. */
static int check_run_flags(sweep_t *w) {
    const sweep_grid_t *g = &w->g;
    char err[4096];
    if (parse_as_run(w, NULL, &w->base, err, sizeof err)) {
        fprintf(stderr, "timirec sweep: the settings every run shares are not valid: %s\n", err);
        return 2;
    }
    for (int k = 0; k < g->n_keys; k++) {
        char *flag = tmr_strf("--%s=%s", g->key[k], g->value[k][0]);
        run_args_t tmp;
        int unknown = parse_as_run(w, flag, &tmp, err, sizeof err) && strstr(err, "unknown flag");
        free(flag);
        if (unknown) { /* a bad value only fails its own runs; a bad key fails them all */
            fprintf(stderr, "timirec sweep: --grid: %s is not a training flag "
                            "(timirec --model_name TiMiRec --help lists them)\n", g->key[k]);
            return 2;
        }
    }
    metrics_parse(w->base.metric, w->base.topk, &w->spec, err, sizeof err);
    return -1;
}

/* --seeds (default: the run's random_seed), and the results table with --plot_metric among its
 * columns. */
static int check_seeds_and_table(sweep_t *w) {
    const sweep_opts_t *o = &w->o;
    if (*o->seeds) {
        w->n_seeds = split_list(o->seeds, w->seeds, MAX_SEEDS);
        int seeds_ok = w->n_seeds >= 1;
        for (int s = 0; s < w->n_seeds; s++) {
            char *e;
            long long v = strtoll(w->seeds[s], &e, 10);
            seeds_ok &= !*e && v >= 0;
        }
        if (!seeds_ok) {
            if (w->n_seeds < 0) w->n_seeds = 0;
            fprintf(stderr, "timirec sweep: --seeds: \"%s\" must be a list of seeds like 0,1,2 "
                            "(at most %d)\n", o->seeds, MAX_SEEDS);
            return 2;
        }
    } else {
        w->seeds[w->n_seeds++] = tmr_strf("%lld", (long long)w->base.random_seed);
    }
    w->plot_col = *o->plot_metric
                      ? tmr_strf("test_%s", o->plot_metric)
                      : tmr_strf("test_%s@%d", metrics_kind_name(w->spec.kind[0]), w->spec.topk[0]);
    results_init(&w->t, &w->g, &w->spec);
    if (csv_table_col(&w->t.csv, w->plot_col) < 0) {
        fprintf(stderr, "timirec sweep: --plot_metric: %s is not among the test metrics (--metric "
                        "%s --topk %s)\n", w->plot_col + 5, w->base.metric, w->base.topk);
        return 2;
    }
    return -1;
}

/* --gpus: distinct device ids; the sweep then sets every run's --gpu, so neither the shared
 * settings nor the grid may. */
static int check_gpus(sweep_t *w) {
    const char *list = w->o.gpus;
    if (!*list) return -1;
    w->n_gpus = split_list(list, w->gpus, MAX_GPUS);
    int ok = w->n_gpus >= 1;
    for (int i = 0; ok && i < w->n_gpus; i++) {
        ok = strspn(w->gpus[i], "0123456789") == strlen(w->gpus[i]);
        for (int j = 0; ok && j < i; j++) ok = strcmp(w->gpus[i], w->gpus[j]) != 0;
    }
    if (!ok) {
        if (w->n_gpus < 0) w->n_gpus = 0;
        fprintf(stderr, "timirec sweep: --gpus: \"%s\" must be distinct device ids like 0,1,2 "
                        "(at most %d)\n", list, MAX_GPUS);
        return 2;
    }
    int in_grid = 0;
    for (int k = 0; k < w->g.n_keys; k++) in_grid |= strcmp(w->g.key[k], "gpu") == 0;
    if (in_grid || w->base.gpu[0]) {
        fprintf(stderr, "timirec sweep: --gpus sets --gpu of every run: do not pass --gpu%s too\n",
                in_grid ? " in the grid" : "");
        return 2;
    }
    return -1;
}

/* DIR: the table so far, and base.ini (a resumed sweep must share the settings of the rows it
 * keeps; the grid and the seeds may grow). */
static int open_out_dir(sweep_t *w) {
    const sweep_opts_t *o = &w->o;
    char err[4096];
    if (mkdirs(o->out, err, sizeof err)) {
        fprintf(stderr, "timirec sweep: %s\n", err);
        return 2;
    }
    w->base_ini = tmr_strf("%s/base.ini", o->out);
    w->csv_path = tmr_strf("%s/sweep.csv", o->out);
    w->new_ini = tmr_strf("%s/base.ini.new", o->out);
    if (results_load(&w->t, w->csv_path, err, sizeof err)) {
        fprintf(stderr, "timirec sweep: %s\n", err);
        return 2;
    }
    char *old = NULL;
    size_t old_len;
    if (w->t.csv.n_rows > 0 && text_read_file(w->base_ini, &old, &old_len, err, sizeof err) == 0 &&
        strcmp(old, w->settings) != 0) {
        write_file(w->new_ini, w->settings, err, sizeof err);
        fprintf(stderr, "timirec sweep: %s holds runs made with other shared settings (%s); this "
                        "sweep would use %s. Use another --out, or delete %s to start over.\n",
                o->out, w->base_ini, w->new_ini, o->out);
        free(old);
        return 2;
    }
    free(old);
    if (write_file(w->new_ini, w->settings, err, sizeof err) || rename(w->new_ini, w->base_ini) != 0) {
        fprintf(stderr, "timirec sweep: cannot write %s: %s\n", w->base_ini, strerror(errno));
        return 2;
    }
    return -1;
}

/* Options, settings, grid, output folder and the existing sweep.csv. Returns -1 to run, or the
 * exit code (0 after --help, 2 for a usage error). */
static int sweep_setup(sweep_t *w, int argc, char **argv) {
    w->o = (sweep_opts_t){.config = "", .grid = "", .seeds = "", .out = "", .stages = "pretrain,finetune",
                          .plot_metric = "", .gpus = "", .max_runs = 0, .retry_failed = 0, .plots = 1};
    sweep_table(&w->o, w->st);
    char *pass = NULL;
    size_t pass_len = 0;
    int rc = sort_argv(w, argc, argv, &pass, &pass_len);
    if (rc < 0) rc = read_options(w, pass, pass_len);
    free(pass);
    if (rc < 0) rc = check_grid_and_stages(w);
    if (rc < 0) rc = check_run_flags(w);
    if (rc < 0) rc = check_seeds_and_table(w);
    if (rc < 0) rc = check_gpus(w);
    if (rc < 0) rc = open_out_dir(w);
    /* The children run this very binary, even if the file is rebuilt during the sweep. */
    if (rc < 0 && access("/proc/self/exe", X_OK) != 0) {
        fprintf(stderr, "timirec sweep: cannot run /proc/self/exe (this program): %s\n", strerror(errno));
        rc = 2;
    }
    return rc;
}

/* ---- running ------------------------------------------------------------------------------- */

/* Counts of the runs of a sweep. */
typedef struct {
    int64_t total, started, ran, done_before, failed;
} progress_t;

enum { GO_ON, STOP_MAX_RUNS, STOP_INTERRUPTED, STOP_SAVE_FAILED };

/* Where a sweep.csv row comes in this sweep's order of runs ((point, seed, stage), the last
 * grid key fastest), or -1 when its grid values, seed or stage are not this sweep's. */
static int64_t row_position(const sweep_t *w, char *const *row) {
    const sweep_grid_t *g = &w->g;
    int64_t p = 0;
    for (int k = 0; k < g->n_keys; k++) {
        int j = 0;
        while (j < g->n_values[k] && strcmp(g->value[k][j], row[k]) != 0) j++;
        if (j == g->n_values[k]) return -1;
        p = p * g->n_values[k] + j;
    }
    int si = 0, s = 0;
    while (si < w->n_seeds && strcmp(w->seeds[si], row[w->t.c_seed]) != 0) si++;
    while (s < w->n_stages && strcmp(w->stages[s], row[w->t.c_stage]) != 0) s++;
    if (si == w->n_seeds || s == w->n_stages) return -1;
    return (p * w->n_seeds + si) * w->n_stages + s;
}

/* Take ownership of a new run's row: it replaces the row with its key, else goes before the
 * first row that comes later in this sweep's order, so the table is in grid order whatever
 * order the runs end in (with --gpus as without). */
static void results_insert(sweep_t *w, char **row) {
    csv_table_t *csv = &w->t.csv;
    int i = results_find(&w->t, row, row[w->t.c_seed], row[w->t.c_stage]);
    if (i >= 0) {
        csv_table_replace(csv, i, row);
        return;
    }
    int64_t pos = row_position(w, row);
    csv_table_append(csv, row);
    i = 0;
    while (i < csv->n_rows - 1 && !(row_position(w, csv->row[i]) > pos)) i++;
    memmove(&csv->row[i + 1], &csv->row[i], (size_t)(csv->n_rows - 1 - i) * sizeof *csv->row);
    csv->row[i] = row;
}

/* A GPU of --gpus (without it, the one slot) and the chain of runs it works through: the stages
 * of one (point, seed) in order, since a finetune reads its own pretrain's checkpoint. */
typedef struct {
    int index;                       /* in sched_t.slot, and in g_child */
    const char *gpu;                 /* --gpu of its runs; NULL without --gpus */
    int64_t chain;                   /* point * n_seeds + seed index; -1 when none */
    int stage;                       /* the stage running or next */
    char *keyvals[SWEEP_MAX_KEYS];   /* the chain's point (the grid's strings) */
    char *point, *run_dir;           /* "K=2 history_max=50", "runs/K=2__history_max=50__seed=0" */
    const char *seed;
    pid_t pid;                       /* the running child; 0 when none */
    run_job_t job;
} slot_t;

/* The runs of a sweep over its slots. */
typedef struct {
    sweep_t *w;
    progress_t pr;
    slot_t slot[MAX_GPUS];
    int n_slots, n_busy, stop;
    int64_t next_chain, n_chains;
} sched_t;

static void chain_open(const sweep_t *w, slot_t *sl, int64_t chain) {
    const sweep_grid_t *g = &w->g;
    int idx[SWEEP_MAX_KEYS];
    sweep_grid_point(g, chain / w->n_seeds, idx);
    for (int k = 0; k < g->n_keys; k++) sl->keyvals[k] = g->value[k][idx[k]];
    sl->chain = chain;
    sl->stage = 0;
    sl->seed = w->seeds[chain % w->n_seeds];
    sl->point = point_name(g, sl->keyvals, " ", NULL);
    sl->run_dir = point_name(g, sl->keyvals, "__", sl->seed);
}

static void chain_close(slot_t *sl) {
    free(sl->point);
    free(sl->run_dir);
    sl->point = sl->run_dir = NULL;
    sl->chain = -1;
}

/* "[7/16] K=2 history_max=50 seed=0 finetune" and, with gpu, " on GPU 1"; then ": ". */
static void print_head(const sched_t *s, const slot_t *sl, const char *gpu) {
    int64_t at = sl->chain * s->w->n_stages + sl->stage + 1;
    printf("[%lld/%lld] %s seed=%s %s%s%s: ", (long long)at, (long long)s->pr.total, sl->point,
           sl->seed, s->w->stages[sl->stage], gpu ? " on GPU " : "", gpu ? gpu : "");
}

/* The row of the slot's stage (res NULL: none), its outcome line, and sweep.csv saved. */
static void record(sched_t *s, slot_t *sl, const char *status, const char *why,
                   const jsonl_run_summary_t *res, double wall) {
    sweep_t *w = s->w;
    results_t *t = &w->t;
    jsonl_run_summary_t none;
    memset(&none, 0, sizeof none);
    if (!res) res = &none;
    char **row = result_row(t, sl->keyvals, sl->seed, w->stages[sl->stage], sl->run_dir, status,
                            why, res, wall);
    if (strcmp(status, "ok") == 0)
        printf("ok  %s %s  best epoch %d of %d  %.1f s  %.0f samples/s\n", w->plot_col + 5,
               row[csv_table_col(&t->csv, w->plot_col)], res->best_epoch, res->epochs, wall,
               res->samples_per_s);
    else {
        s->pr.failed++;
        printf("%s: %s\n", status, why);
    }
    fflush(stdout);
    results_insert(w, row);
    char err[4096];
    if (csv_table_save(&t->csv, w->csv_path, err, sizeof err)) {
        fprintf(stderr, "timirec sweep: %s\n", err);
        s->stop = STOP_SAVE_FAILED;
    }
}

enum { PLAN_DONE, PLAN_SKIP, PLAN_RUN };

/* The slot's stage: done before (sweep.csv has it, counted), to be recorded as skipped (its
 * pretrain did not succeed), or to run. */
static int stage_plan(const sweep_t *w, const slot_t *sl, progress_t *pr) {
    const results_t *t = &w->t;
    int s = sl->stage;
    int pretrain_first = w->n_stages == 2 && strcmp(w->stages[0], "pretrain") == 0;
    int row_i = results_find(t, sl->keyvals, sl->seed, w->stages[s]);
    int pre_i = pretrain_first && s == 1 ? results_find(t, sl->keyvals, sl->seed, "pretrain") : -1;
    int pre_ok = !pretrain_first || s == 0 || (pre_i >= 0 && strcmp(results_status(t, pre_i), "ok") == 0);
    if (row_i >= 0) {
        const char *status = results_status(t, row_i);
        int done = strcmp(status, "ok") == 0 || (strcmp(status, "failed") == 0 && !w->o.retry_failed) ||
                   (strcmp(status, "skipped") == 0 && !pre_ok);
        if (done) {
            pr->done_before++;
            pr->failed += strcmp(status, "ok") != 0;
            return PLAN_DONE;
        }
    }
    return pre_ok ? PLAN_RUN : PLAN_SKIP;
}

/* Give the slot its next run: the next stage of its chain, else the first of the next chain;
 * stages done before are passed, skipped ones recorded. Leaves the slot without a child when
 * nothing is left or the sweep stops. */
static void slot_next(sched_t *s, slot_t *sl) {
    sweep_t *w = s->w;
    for (;;) {
        if (g_stop_signal && s->stop != STOP_SAVE_FAILED) s->stop = STOP_INTERRUPTED;
        if (s->stop != GO_ON) return;
        if (sl->chain >= 0 && sl->stage == w->n_stages) chain_close(sl);
        if (sl->chain < 0) {
            if (s->next_chain == s->n_chains) return;
            chain_open(w, sl, s->next_chain++);
        }
        int plan = stage_plan(w, sl, &s->pr);
        if (plan == PLAN_DONE) {
            sl->stage++;
            continue;
        }
        if (w->o.max_runs > 0 && s->pr.started >= w->o.max_runs) {
            printf("sweep: stopped after %lld runs (--max_runs); the same command resumes\n",
                   (long long)s->pr.started);
            s->stop = STOP_MAX_RUNS;
            return;
        }
        char *why = NULL;
        if (plan == PLAN_SKIP) {
            print_head(s, sl, NULL);
            record(s, sl, "skipped", "pretrain did not succeed", NULL, NAN);
            sl->stage++;
            continue;
        }
        print_head(s, sl, NULL); /* without --gpus the outcome follows on the same line */
        if (w->n_gpus) printf("started on GPU %s\n", sl->gpu);
        fflush(stdout);
        s->pr.started++;
        sl->pid = run_start("/proc/self/exe", w->o.out, w->shared, w->n_shared, &w->g, sl->keyvals,
                            sl->seed, w->stages[sl->stage], sl->run_dir, sl->gpu, sl->index, &sl->job,
                            &why);
        if (sl->pid > 0) {
            s->n_busy++;
            return;
        }
        if (w->n_gpus) print_head(s, sl, sl->gpu);
        s->pr.ran++;
        record(s, sl, "failed", why, NULL, tmr_now() - sl->job.t0);
        free(why);
        run_job_free(&sl->job);
        sl->stage++;
    }
}

/* The slot's child ended with wait status ws: its row, unless the sweep was interrupted. */
static void slot_done(sched_t *s, slot_t *sl, int ws) {
    jsonl_run_summary_t res;
    memset(&res, 0, sizeof res);
    const char *status;
    char *why;
    g_child[sl->index] = 0;
    sl->pid = 0;
    s->n_busy--;
    int interrupted = run_finish(&sl->job, ws, &res, &status, &why);
    if (s->w->n_gpus) print_head(s, sl, sl->gpu);
    if (interrupted || s->stop == STOP_SAVE_FAILED) {
        printf("interrupted (not recorded)\n");
        if (s->stop != STOP_SAVE_FAILED) s->stop = STOP_INTERRUPTED;
    } else {
        s->pr.ran++;
        record(s, sl, status, why, &res, tmr_now() - sl->job.t0);
        sl->stage++;
    }
    fflush(stdout);
    free(why);
    run_job_free(&sl->job);
}

/* Every (point, seed, stage) not done yet, on the slots (one without --gpus, else one per GPU);
 * the table is saved after each. Fills s->pr and s->stop. */
static void sched_run(sched_t *s) {
    sweep_t *w = s->w;
    s->n_slots = w->n_gpus ? w->n_gpus : 1;
    s->n_chains = w->g.n_points * w->n_seeds;
    for (int i = 0; i < s->n_slots; i++) {
        s->slot[i] = (slot_t){.index = i, .gpu = w->n_gpus ? w->gpus[i] : NULL, .chain = -1};
        slot_next(s, &s->slot[i]);
    }
    while (s->n_busy > 0) {
        int ws;
        pid_t pid = waitpid(-1, &ws, 0);
        if (pid < 0 && errno == EINTR) continue;
        if (pid < 0) tmr_fatal("sweep: waitpid: %s", strerror(errno));
        slot_t *sl = NULL;
        for (int i = 0; i < s->n_slots; i++)
            if (s->slot[i].pid == pid) sl = &s->slot[i];
        if (!sl) continue;
        slot_done(s, sl, ws);
        if (s->stop == STOP_SAVE_FAILED) /* nothing more can be recorded: end the others */
            for (int i = 0; i < s->n_slots; i++)
                if (s->slot[i].pid > 0) kill(s->slot[i].pid, SIGTERM);
        slot_next(s, sl);
    }
    for (int i = 0; i < s->n_slots; i++)
        if (s->slot[i].chain >= 0) chain_close(&s->slot[i]);
}

/* The figures, or why there are none. */
static void sweep_plots(const sweep_t *w) {
    const sweep_opts_t *o = &w->o;
    const sweep_grid_t *g = &w->g;
    int have = plot_have_gnuplot(), keys_to_plot = 0;
    for (int k = 0; k < g->n_keys; k++) keys_to_plot += g->n_values[k] > 1;
    plot_spec_t ps = {o->out, &w->t, g, w->seeds, w->stages, w->n_seeds, w->n_stages,
                      w->plot_col, w->base.dataset};
    make_plots(&ps, have);
    if (!have)
        printf("plots skipped: gnuplot is not installed (apt-get install -y gnuplot-nox); "
               "%s/plot_*.dat and .gp are ready for it\n", o->out);
    else if (keys_to_plot == 0)
        printf("plots: none (a plot needs a grid key with 2 or more values)\n");
}

/* Every (point, seed, stage) not done yet, then the plots. Returns the exit code. */
static int sweep_run(sweep_t *w) {
    const sweep_grid_t *g = &w->g;
    sched_t *s = tmr_calloc(1, sizeof *s);
    s->w = w;
    s->pr.total = g->n_points * w->n_seeds * w->n_stages;
    printf("sweep: %lld points x %d seed%s x %d stage%s = %lld runs (dataset %s) into %s\n",
           (long long)g->n_points, w->n_seeds, w->n_seeds > 1 ? "s" : "", w->n_stages,
           w->n_stages > 1 ? "s" : "", (long long)s->pr.total, w->base.dataset, w->o.out);
    if (w->n_gpus)
        printf("sweep: on GPUs %s, one run per GPU at a time\n", w->o.gpus);
    install_signals();
    double t_sweep = tmr_now();
    sched_run(s);
    progress_t pr = s->pr;
    int stop = s->stop;
    free(s);
    if (stop == STOP_SAVE_FAILED) return 1;
    printf("sweep: %lld runs now, %lld already done, %lld failed or skipped; %s [%.1f s]\n",
           (long long)pr.ran, (long long)pr.done_before, (long long)pr.failed, w->csv_path,
           tmr_now() - t_sweep);
    if (stop == STOP_INTERRUPTED) {
        printf("sweep: interrupted; run the same command again to resume\n");
        return 128 + (int)g_stop_signal;
    }
    if (w->o.plots) sweep_plots(w);
    return pr.failed ? 1 : 0;
}

int sweep_main(int argc, char **argv) {
    sweep_t *w = tmr_calloc(1, sizeof *w);
    int rc = sweep_setup(w, argc, argv);
    if (rc < 0) rc = sweep_run(w);
    sweep_free(w);
    free(w);
    return rc;
}
