/* timirec sweep (include/timirec/sweep.h): a grid of run flags, every combination and seed
 * run as a child process of this binary (fork + exec of /proc/self/exe), so a failing or
 * crashing point is recorded and the sweep goes on.
 *
 * DIR (--out) holds:
 *   base.ini          the settings every run shares: the --config file's run options and the
 *                     flags passed through, one "name = value" a line (a resumed sweep must
 *                     have the same; the grid and the seeds may grow)
 *   sweep.csv         one row per run, rewritten (temporary file + rename) after every run
 *   runs/<point>__seed=S/{model/, pretrain.log, pretrain.jsonl, pretrain.err, finetune.*}
 *   plot_<key>.{png,svg,dat,gp}   metric and throughput against each grid key
 * Each run's numbers come from its JSON-lines log (run.c --json_log), never from its text. */
#include "timirec/sweep.h"

#include "timirec/common.h"
#include "timirec/metrics.h"
#include "timirec/options.h"
#include "timirec/run.h"
#include "timirec/text.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

/* ---- grid ---------------------------------------------------------------------------------- */

static char *dup_span(const char *s, size_t n) {
    char *d = tmr_malloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* printf into a new string (the paths of a sweep have no fixed bound). */
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static char *strf(const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    if (n < 0) tmr_fatal("sweep: bad format \"%s\"", f);
    char *s = tmr_malloc((size_t)n + 1);
    va_start(ap, f);
    vsnprintf(s, (size_t)n + 1, f, ap);
    va_end(ap);
    return s;
}

static text_span_t trim(const char *s, size_t n) { return text_trim((text_span_t){s, n}); }

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
        const char *eq = memchr(part.s, '=', part.n);
        if (!eq) {
            tmr_error(err, errlen, "--grid: \"%.*s\" has no \"=\" (write key=v1,v2,...)", (int)part.n,
                      part.s);
            goto fail;
        }
        text_span_t key = trim(part.s, (size_t)(eq - part.s));
        if (key.n >= 2 && key.s[0] == '-' && key.s[1] == '-') key.s += 2, key.n -= 2;
        int key_ok = key.n > 0;
        for (size_t i = 0; i < key.n; i++) key_ok &= isalnum((unsigned char)key.s[i]) || key.s[i] == '_';
        if (!key_ok) {
            tmr_error(err, errlen, "--grid: \"%.*s\" is not a flag name", (int)key.n, key.s);
            goto fail;
        }
        if (g->n_keys == SWEEP_MAX_KEYS) {
            tmr_error(err, errlen, "--grid: more than %d keys", SWEEP_MAX_KEYS);
            goto fail;
        }
        for (int k = 0; k < g->n_keys; k++)
            if (strlen(g->key[k]) == key.n && memcmp(g->key[k], key.s, key.n) == 0) {
                tmr_error(err, errlen, "--grid: key %.*s appears twice", (int)key.n, key.s);
                goto fail;
            }
        int k = g->n_keys++;
        g->key[k] = dup_span(key.s, key.n);
        const char *v = eq + 1, *vend = part.s + part.n;
        for (;;) {
            const char *comma = memchr(v, ',', (size_t)(vend - v));
            const char *ve = comma ? comma : vend;
            text_span_t val = trim(v, (size_t)(ve - v));
            v = ve + 1;
            int val_ok = val.n > 0;
            for (size_t i = 0; i < val.n; i++) val_ok &= !isspace((unsigned char)val.s[i]);
            if (!val_ok) {
                tmr_error(err, errlen, "--grid: key %.*s has an empty or blank value", (int)key.n, key.s);
                goto fail;
            }
            if (g->n_values[k] == SWEEP_MAX_VALUES) {
                tmr_error(err, errlen, "--grid: more than %d values for %.*s", SWEEP_MAX_VALUES,
                          (int)key.n, key.s);
                goto fail;
            }
            for (int j = 0; j < g->n_values[k]; j++)
                if (strlen(g->value[k][j]) == val.n && memcmp(g->value[k][j], val.s, val.n) == 0) {
                    tmr_error(err, errlen, "--grid: value %.*s of %.*s appears twice", (int)val.n,
                              val.s, (int)key.n, key.s);
                    goto fail;
                }
            g->value[k][g->n_values[k]++] = dup_span(val.s, val.n);
            if (!comma) break;
        }
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

/* ---- a small JSON reader for run.c's flat records ------------------------------------------ */

static void json_ws(const char **p) {
    while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r') (*p)++;
}

/* A string at *p (which points at '"') into out (escapes \" \\ \/ \n \t kept simple, \uXXXX
 * becomes '?'); advances past it. 0 or -1. */
static int json_string(const char **p, char *out, size_t n) {
    if (**p != '"') return -1;
    size_t k = 0;
    for ((*p)++; **p && **p != '"'; (*p)++) {
        char c = **p;
        if (c == '\\') {
            (*p)++;
            c = **p;
            if (!c) return -1;
            if (c == 'n') c = '\n';
            else if (c == 't') c = '\t';
            else if (c == 'u') {
                for (int i = 0; i < 4; i++)
                    if (!isxdigit((unsigned char)(*p)[1])) return -1;
                    else (*p)++;
                c = '?';
            }
        }
        if (out && k + 1 < n) out[k++] = c;
    }
    if (**p != '"') return -1;
    (*p)++;
    if (out && n) out[k] = 0;
    return 0;
}

static int json_skip(const char **p) {
    json_ws(p);
    if (**p == '"') return json_string(p, NULL, 0);
    if (**p == '{' || **p == '[') {
        char close = **p == '{' ? '}' : ']';
        (*p)++;
        json_ws(p);
        if (**p == close) {
            (*p)++;
            return 0;
        }
        for (;;) {
            if (close == '}') {
                json_ws(p);
                if (json_string(p, NULL, 0)) return -1;
                json_ws(p);
                if (**p != ':') return -1;
                (*p)++;
            }
            if (json_skip(p)) return -1;
            json_ws(p);
            if (**p == ',') {
                (*p)++;
                continue;
            }
            if (**p != close) return -1;
            (*p)++;
            return 0;
        }
    }
    const char *s = *p; /* number, true, false, null */
    while (**p && (isalnum((unsigned char)**p) || **p == '-' || **p == '+' || **p == '.')) (*p)++;
    return *p > s ? 0 : -1;
}

/* Next member of an object: *p at '{' (first call) or just after the previous value. Returns 1
 * with key and *value (pointing at the value, which the caller may read or skip), 0 at '}',
 * -1 on malformed input. The caller must leave *p after the value: use json_skip. */
static int json_next_member(const char **p, char *key, size_t n, const char **value) {
    json_ws(p);
    if (**p == '{' || **p == ',') (*p)++;
    json_ws(p);
    if (**p == '}') {
        (*p)++;
        return 0;
    }
    if (json_string(p, key, n)) return -1;
    json_ws(p);
    if (**p != ':') return -1;
    (*p)++;
    json_ws(p);
    *value = *p;
    return 1;
}

static int json_number(const char *v, double *out) {
    char *e;
    double x = strtod(v, &e);
    if (e == v) return -1;
    *out = x;
    return 0;
}

/* Metrics object {"NDCG@5": 0.1, ...} into names/values; returns the count or -1. */
static int json_metrics(const char *v, char (*names)[24], double *values) {
    const char *p = v;
    if (*p != '{') return -1;
    char key[64];
    const char *val;
    int n = 0, rc;
    while ((rc = json_next_member(&p, key, sizeof key, &val)) == 1) {
        if (n < SWEEP_MAX_METRICS && json_number(val, &values[n]) == 0) {
            snprintf(names[n], 24, "%.23s", key);
            n++;
        }
        p = val;
        if (json_skip(&p)) return -1;
    }
    return rc < 0 ? -1 : n;
}

int sweep_read_json_log(const char *path, sweep_result_t *r, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    char *buf;
    size_t len;
    if (text_read_file(path, &buf, &len, err, errlen)) return -1;
    const char *lp = buf, *end = buf + len;
    text_span_t line;
    int line_no = 0;
    double samples = 0;
    while (text_next_line(&lp, end, &line)) {
        line_no++;
        if (text_is_blank(line)) continue;
        char *obj = dup_span(line.s, line.n);
        const char *p = obj, *val;
        char key[64], event[32] = "";
        json_ws(&p);
        if (*p != '{') {
            free(obj);
            free(buf);
            return tmr_error(err, errlen, "%s:%d: not a JSON object", path, line_no);
        }
        int epoch = 0, best = 0, rc;
        double train_s = 0, eval_s = 0, sps = 0;
        const char *dev = NULL, *metrics = NULL;
        while ((rc = json_next_member(&p, key, sizeof key, &val)) == 1) {
            double x;
            if (strcmp(key, "event") == 0) {
                const char *q = val;
                json_string(&q, event, sizeof event);
            } else if (strcmp(key, "epoch") == 0 && json_number(val, &x) == 0) epoch = (int)x;
            else if (strcmp(key, "train_s") == 0) json_number(val, &train_s);
            else if (strcmp(key, "eval_s") == 0) json_number(val, &eval_s);
            else if (strcmp(key, "samples_per_s") == 0) json_number(val, &sps);
            else if (strcmp(key, "best") == 0) best = strncmp(val, "true", 4) == 0;
            else if (strcmp(key, "dev") == 0) dev = val;
            else if (strcmp(key, "metrics") == 0) metrics = val;
            p = val;
            if (json_skip(&p)) break;
        }
        if (rc != 0) {
            free(obj);
            free(buf);
            return tmr_error(err, errlen, "%s:%d: malformed JSON record", path, line_no);
        }
        if (strcmp(event, "epoch") == 0) {
            r->epochs++;
            r->train_s += train_s;
            r->eval_s += eval_s;
            samples += sps * train_s;
            if (best && dev) {
                int n = json_metrics(dev, r->dev_name, r->dev);
                if (n >= 0) {
                    r->n_dev = n;
                    r->best_epoch = epoch;
                }
            }
        } else if (strcmp(event, "test") == 0 && metrics) {
            int n = json_metrics(metrics, r->test_name, r->test);
            if (n >= 0) {
                r->n_test = n;
                r->has_test = 1;
            }
        }
        free(obj);
    }
    free(buf);
    r->samples_per_s = r->train_s > 0 ? samples / r->train_s : 0;
    return 0;
}

/* ---- CSV ----------------------------------------------------------------------------------- */

int sweep_csv_split(const char *line, char **fields, int max_fields) {
    int n = 0;
    const char *p = line;
    size_t cap = strlen(line) + 1;
    for (;;) {
        char *f = tmr_malloc(cap);
        size_t k = 0;
        if (*p == '"') {
            for (p++; *p; p++) {
                if (*p == '"') {
                    if (p[1] == '"') {
                        f[k++] = '"';
                        p++;
                        continue;
                    }
                    p++;
                    break;
                }
                f[k++] = *p;
            }
            while (*p && *p != ',') f[k++] = *p++; /* text after the closing quote: kept */
        } else {
            while (*p && *p != ',') f[k++] = *p++;
        }
        f[k] = 0;
        if (n < max_fields) fields[n++] = f;
        else free(f);
        if (*p != ',') break;
        p++;
    }
    return n;
}

void sweep_csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* ---- the results table (sweep.csv) --------------------------------------------------------- */

#define MAX_COLS 192

typedef struct {
    int n_cols;
    char *col[MAX_COLS];
    int n_rows, cap_rows;
    char ***row;           /* row[i][c] */
    /* column positions */
    int c_seed, c_stage, c_status, c_why, c_epochs, c_best, c_dev0, c_test0, c_train_s, c_eval_s,
        c_sps, c_wall, c_dir;
    int n_keys, n_dev, n_test;
} table_t;

static void table_add_col(table_t *t, const char *name) {
    if (t->n_cols == MAX_COLS) tmr_fatal("sweep: more than %d columns in sweep.csv", MAX_COLS);
    t->col[t->n_cols++] = dup_span(name, strlen(name));
}

/* Columns: grid keys, seed, stage, status, why, epochs, best_epoch, dev_<metric at the first
 * topk>..., test_<metric@k>..., train_s, eval_s, samples_per_s, wall_s, run_dir. */
static void table_init(table_t *t, const sweep_grid_t *g, const metric_spec_t *spec) {
    memset(t, 0, sizeof *t);
    char name[64];
    for (int k = 0; k < g->n_keys; k++) table_add_col(t, g->key[k]);
    t->n_keys = g->n_keys;
    t->c_seed = t->n_cols, table_add_col(t, "seed");
    t->c_stage = t->n_cols, table_add_col(t, "stage");
    t->c_status = t->n_cols, table_add_col(t, "status");
    t->c_why = t->n_cols, table_add_col(t, "why");
    t->c_epochs = t->n_cols, table_add_col(t, "epochs");
    t->c_best = t->n_cols, table_add_col(t, "best_epoch");
    t->c_dev0 = t->n_cols;
    for (int m = 0; m < spec->n_kind; m++) {
        snprintf(name, sizeof name, "dev_%s@%d", metrics_kind_name(spec->kind[m]), spec->topk[0]);
        table_add_col(t, name);
        t->n_dev++;
    }
    t->c_test0 = t->n_cols;
    for (int m = 0; m < spec->n_kind; m++)
        for (int k = 0; k < spec->n_topk; k++) {
            snprintf(name, sizeof name, "test_%s@%d", metrics_kind_name(spec->kind[m]), spec->topk[k]);
            table_add_col(t, name);
            t->n_test++;
        }
    t->c_train_s = t->n_cols, table_add_col(t, "train_s");
    t->c_eval_s = t->n_cols, table_add_col(t, "eval_s");
    t->c_sps = t->n_cols, table_add_col(t, "samples_per_s");
    t->c_wall = t->n_cols, table_add_col(t, "wall_s");
    t->c_dir = t->n_cols, table_add_col(t, "run_dir");
}

static void table_free(table_t *t) {
    for (int i = 0; i < t->n_rows; i++) {
        for (int c = 0; c < t->n_cols; c++) free(t->row[i][c]);
        free(t->row[i]);
    }
    free(t->row);
    for (int c = 0; c < t->n_cols; c++) free(t->col[c]);
    memset(t, 0, sizeof *t);
}

static int table_col(const table_t *t, const char *name) {
    for (int c = 0; c < t->n_cols; c++)
        if (strcmp(t->col[c], name) == 0) return c;
    return -1;
}

/* Row of (key values, seed, stage), or -1. */
static int table_find(const table_t *t, char *const *keyvals, const char *seed, const char *stage) {
    for (int i = 0; i < t->n_rows; i++) {
        char **r = t->row[i];
        int same = strcmp(r[t->c_seed], seed) == 0 && strcmp(r[t->c_stage], stage) == 0;
        for (int k = 0; same && k < t->n_keys; k++) same = strcmp(r[k], keyvals[k]) == 0;
        if (same) return i;
    }
    return -1;
}

/* Take ownership of row (n_cols strings): replaces the row with the same key or appends. */
static void table_put(table_t *t, char **row) {
    int i = table_find(t, row, row[t->c_seed], row[t->c_stage]);
    if (i >= 0) {
        for (int c = 0; c < t->n_cols; c++) free(t->row[i][c]);
        free(t->row[i]);
        t->row[i] = row;
        return;
    }
    if (t->n_rows == t->cap_rows) {
        t->cap_rows = t->cap_rows ? 2 * t->cap_rows : 64;
        t->row = tmr_realloc(t->row, (size_t)t->cap_rows * sizeof *t->row);
    }
    t->row[t->n_rows++] = row;
}

/* Load an existing sweep.csv; its header must be this sweep's. 0 (also when there is no file)
 * or -1 with a message. */
static int table_load(table_t *t, const char *path, char *err, size_t errlen) {
    if (access(path, F_OK) != 0) return 0;
    char *buf;
    size_t len;
    if (text_read_file(path, &buf, &len, err, errlen)) return -1;
    const char *p = buf, *end = buf + len;
    text_span_t line;
    int line_no = 0;
    while (text_next_line(&p, end, &line)) {
        line_no++;
        if (text_is_blank(line)) continue;
        char *l = dup_span(line.s, line.n);
        char **f = tmr_malloc(MAX_COLS * sizeof *f);
        int n = sweep_csv_split(l, f, MAX_COLS);
        free(l);
        int bad = n != t->n_cols;
        if (line_no == 1) {
            for (int c = 0; !bad && c < n; c++) bad = strcmp(f[c], t->col[c]) != 0;
            for (int c = 0; c < n; c++) free(f[c]);
            free(f);
            if (bad) {
                free(buf);
                return tmr_error(err, errlen, "%s has other columns than this sweep writes (another "
                                 "grid's keys or other metrics): use another --out", path);
            }
            continue;
        }
        if (bad) {
            for (int c = 0; c < n; c++) free(f[c]);
            free(f);
            free(buf);
            return tmr_error(err, errlen, "%s:%d: %d fields, expected %d", path, line_no, n, t->n_cols);
        }
        table_put(t, f);
    }
    free(buf);
    return 0;
}

static int table_save(const table_t *t, const char *path, char *err, size_t errlen) {
    char *tmp = strf("%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int rc = 0;
    if (!f) {
        rc = tmr_error(err, errlen, "%s: cannot write: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    for (int c = 0; c < t->n_cols; c++) {
        if (c) fputc(',', f);
        sweep_csv_field(f, t->col[c]);
    }
    fputc('\n', f);
    for (int i = 0; i < t->n_rows; i++) {
        for (int c = 0; c < t->n_cols; c++) {
            if (c) fputc(',', f);
            sweep_csv_field(f, t->row[i][c]);
        }
        fputc('\n', f);
    }
    /* On disk before the rename: an interrupted sweep finds the old table or the new one. */
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        rc = tmr_error(err, errlen, "%s: write failed: %s", tmp, strerror(errno));
    if (fclose(f) != 0 && rc == 0) rc = tmr_error(err, errlen, "%s: write failed", tmp);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = tmr_error(err, errlen, "%s: cannot write: %s", path, strerror(errno));
    free(tmp);
    return rc;
}

/* ---- child processes ----------------------------------------------------------------------- */

static volatile sig_atomic_t g_stop_signal = 0;
static volatile pid_t g_child = 0;

/* SIGINT/SIGTERM: remember it and pass it on to the running child; the sweep stops after the
 * child ends, without recording the interrupted run. */
static void on_stop_signal(int sig) {
    g_stop_signal = sig;
    if (g_child > 0) kill(g_child, sig);
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

/* Run exe with argv, stdout to out_path, stderr to err_path. Returns the wait status, or -1 when
 * the child could not be started (message in err). */
static int run_child(const char *exe, char **argv, const char *out_path, const char *err_path,
                     char *err, size_t errlen) {
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
    g_child = pid;
    if (g_stop_signal) kill(pid, g_stop_signal); /* a signal that came just before the fork */
    int status;
    pid_t w;
    while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
    }
    g_child = 0;
    if (w < 0) return tmr_error(err, errlen, "waitpid: %s", strerror(errno));
    return status;
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
    char *path = strf("%s/x", dir);
    int rc = tmr_make_parent_dirs(path, err, errlen);
    free(path);
    return rc;
}

/* ---- the sweep's own options and the settings every run shares ----------------------------- */

typedef struct {
    const char *config, *grid, *seeds, *out, *stages, *plot_metric;
    int64_t max_runs, retry_failed, plots;
} sweep_opts_t;

#define N_SWEEP_OPTS 9
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

static int have_program(const char *name) {
    const char *path = getenv("PATH");
    if (!path) return 0;
    char dir[4096];
    while (*path) {
        size_t n = strcspn(path, ":");
        snprintf(dir, sizeof dir, "%.*s/%s", (int)n, path, name);
        if (access(dir, X_OK) == 0) return 1;
        path += n + (path[n] == ':');
    }
    return 0;
}

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

/* gnuplot string literal: single quotes doubled. */
static void gp_string(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

/* What a figure shows. */
typedef struct {
    const char *dir;               /* DIR */
    const table_t *t;
    const sweep_grid_t *g;
    char **seeds, **stages;
    int n_seeds, n_stages;
    const char *metric_col;        /* "test_NDCG@5" */
    const char *title;             /* dataset (and anything else worth a title) */
} plot_spec_t;

/* The data file of grid key a: one block per (stage, line), a line per combination of the other
 * keys; rows "x-index value metric-mean min max samples/s-mean min max seeds". has[s * n_lines +
 * l] says whether block (s, l) has a point; titles[l] names line l. 0 or -1. */
static int plot_data(const plot_spec_t *ps, int a, const char *dat, int *has, char (*titles)[256]) {
    const table_t *t = ps->t;
    const sweep_grid_t *g = ps->g;
    FILE *fd = fopen(dat, "w");
    if (!fd) return -1;
    int c_metric = table_col(t, ps->metric_col), idx[SWEEP_MAX_KEYS];
    int n_lines = (int)(g->n_points / g->n_values[a]), block = 0;
    fprintf(fd, "# %s: x index, value, %s mean, min, max over seeds, samples/s mean, min, max, "
                "seeds; one block per (stage, line)\n", g->key[a], ps->metric_col);
    for (int s = 0; s < ps->n_stages; s++) {
        int line = 0;
        for (int64_t p = 0; p < g->n_points; p++) {
            sweep_grid_point(g, p, idx);
            if (idx[a] != 0) continue; /* each combination of the other keys once */
            char *title = titles[line];
            size_t tl = 0;
            title[0] = 0;
            for (int k = 0; k < g->n_keys; k++)
                if (k != a && tl < 256)
                    tl += (size_t)snprintf(title + tl, 256 - tl, "%s%s=%s", tl ? " " : "", g->key[k],
                                           g->value[k][idx[k]]);
            if (!title[0]) snprintf(title, 256, "%s", ps->stages[s]);
            fprintf(fd, "# block %d: %s, %s\n", block, ps->stages[s], title);
            for (int v = 0; v < g->n_values[a]; v++) {
                idx[a] = v;
                char *keyvals[SWEEP_MAX_KEYS];
                for (int k = 0; k < g->n_keys; k++) keyvals[k] = g->value[k][idx[k]];
                stat_t m = {0}, r = {0};
                for (int si = 0; si < ps->n_seeds; si++) {
                    int i = table_find(t, keyvals, ps->seeds[si], ps->stages[s]);
                    if (i < 0 || strcmp(t->row[i][t->c_status], "ok") != 0) continue;
                    stat_add(&m, strtod(t->row[i][c_metric], NULL));
                    stat_add(&r, strtod(t->row[i][t->c_sps], NULL));
                }
                if (m.n == 0 || r.n == 0) continue;
                fprintf(fd, "%d %s %.6f %.6f %.6f %.1f %.1f %.1f %d\n", v, g->value[a][v],
                        m.mean / m.n, m.lo, m.hi, r.mean / r.n, r.lo, r.hi, m.n);
                has[s * n_lines + line] = 1;
            }
            fprintf(fd, "\n\n");
            block++;
            line++;
        }
    }
    return fclose(fd) == 0 ? 0 : -1;
}

/* The gnuplot script: a 2 x n_stages multiplot (rows: the metric, samples/s; columns: stages),
 * drawn once as PNG and once as SVG. 0 or -1. */
static int plot_script(const plot_spec_t *ps, int a, const char *gp, const char *dat,
                       const char *png, const char *svg, const int *has, char (*titles)[256]) {
    const sweep_grid_t *g = ps->g;
    int n_lines = (int)(g->n_points / g->n_values[a]);
    FILE *f = fopen(gp, "w");
    if (!f) return -1;
    int width = ps->n_stages > 1 ? 1200 : 700;
    const char *metric = ps->metric_col + 5; /* without "test_" */
    fprintf(f, "# Written by timirec sweep; redraw with: gnuplot %s\n", gp);
    for (int term = 0; term < 2; term++) {
        if (term == 0)
            fprintf(f, "set terminal pngcairo noenhanced size %d,800 font 'sans,10'\n", width);
        else
            fprintf(f, "set terminal svg noenhanced size %d,800 font 'sans,10' background rgb 'white'\n",
                    width);
        fprintf(f, "set output ");
        gp_string(f, term == 0 ? png : svg);
        char *big = ps->n_seeds > 1
                        ? strf("%s: test %s and training throughput against %s (mean of %d seeds; "
                               "bars: min to max)", ps->title, metric, g->key[a], ps->n_seeds)
                        : strf("%s: test %s and training throughput against %s (seed %s)", ps->title,
                               metric, g->key[a], ps->seeds[0]);
        fprintf(f, "\nset multiplot layout 2,%d title ", ps->n_stages);
        gp_string(f, big);
        free(big);
        fprintf(f, "\nset grid\nset key outside right top vertical Left reverse samplen 2\nset bars 2\nset xrange [-0.4:%g]\nset xlabel ",
                g->n_values[a] - 0.6);
        gp_string(f, g->key[a]);
        fprintf(f, "\n");
        for (int panel = 0; panel < 2; panel++)
            for (int s = 0; s < ps->n_stages; s++) {
                char *ttl = panel == 0 ? strf("%s: test %s", ps->stages[s], metric)
                                      : strf("%s: training samples/s", ps->stages[s]);
                fprintf(f, "set title ");
                gp_string(f, ttl);
                free(ttl);
                fprintf(f, "\nset ylabel ");
                gp_string(f, panel == 0 ? metric : "samples/s");
                /* throughput from 0: the eye compares heights; metrics zoom to their range */
                fprintf(f, "\n%s\n", panel == 0 ? "set yrange [*:*]" : "set yrange [0:*]");
                int any = 0;
                for (int l = 0; l < n_lines; l++) any |= has[s * n_lines + l];
                if (!any) {
                    fprintf(f, "set label 1 'no successful runs' at graph 0.5,0.5 center\n"
                               "plot NaN notitle\nunset label 1\n");
                    continue;
                }
                fprintf(f, "plot ");
                int first = 1;
                for (int l = 0; l < n_lines; l++) {
                    if (!has[s * n_lines + l]) continue;
                    fprintf(f, "%s", first ? "" : ", \\\n     ");
                    first = 0;
                    gp_string(f, dat);
                    fprintf(f, " index %d using 1:%d:%d:%d:xtic(2) with yerrorlines lw 2 pt 7 ps 0.8 "
                               "lc %d title ", s * n_lines + l, panel ? 6 : 3, panel ? 7 : 4,
                            panel ? 8 : 5, l + 1);
                    gp_string(f, titles[l]);
                }
                fprintf(f, "\n");
            }
        fprintf(f, "unset multiplot\nset output\n");
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* Run gnuplot on a script, its output to log. 1 when it exited 0. */
static int run_gnuplot(const char *gp, const char *log) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        int fl = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        if (fl >= 0) {
            dup2(fl, 1);
            dup2(fl, 2);
            close(fl);
        }
        execlp("gnuplot", "gnuplot", gp, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return 0;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* One figure per grid key with at least 2 values: DIR/plot_<key>.{dat,gp} always, .png and
 * .svg when draw is set (gnuplot installed). Returns the number of figures drawn. */
static int make_plots(const plot_spec_t *ps, int draw) {
    const sweep_grid_t *g = ps->g;
    int figures = 0;
    for (int a = 0; a < g->n_keys; a++) {
        if (g->n_values[a] < 2) continue;
        char *dat = strf("%s/plot_%s.dat", ps->dir, g->key[a]);
        char *gp = strf("%s/plot_%s.gp", ps->dir, g->key[a]);
        char *png = strf("%s/plot_%s.png", ps->dir, g->key[a]);
        char *svg = strf("%s/plot_%s.svg", ps->dir, g->key[a]);
        char *log = strf("%s/plot_%s.log", ps->dir, g->key[a]);
        int n_lines = (int)(g->n_points / g->n_values[a]);
        int *has = tmr_calloc((size_t)ps->n_stages * (size_t)n_lines, sizeof *has);
        char (*titles)[256] = tmr_calloc((size_t)n_lines, sizeof *titles);
        if (plot_data(ps, a, dat, has, titles) || plot_script(ps, a, gp, dat, png, svg, has, titles)) {
            fprintf(stderr, "timirec sweep: warning: cannot write %s or %s: %s\n", dat, gp,
                    strerror(errno));
        } else if (draw) {
            unlink(png);
            if (run_gnuplot(gp, log) && access(png, R_OK) == 0) {
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
        out[n++] = dup_span(v.s, v.n);
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
    char *s = strf("%s", seed ? "runs/" : "");
    for (int k = 0; k <= g->n_keys; k++) {
        if (k == g->n_keys && !seed) break;
        char *part = k < g->n_keys ? strf("%s=%s", g->key[k], keyvals[k]) : strf("seed=%s", seed);
        if (seed) safe_name(part);
        char *next = strf("%s%s%s", s, k ? sep : "", part);
        free(part);
        free(s);
        s = next;
    }
    return s;
}

/* One run of one stage as a child process: `timirec <the shared settings as flags>
 * --<key>=<value>... --stage S --random_seed N --model_dir DIR/RUN/model/ --log_file DIR/RUN/S.log
 * --json_log DIR/RUN/S.jsonl`, stderr to DIR/RUN/S.err (removed when empty). Flags rather than
 * --config: the argument table in each run's log shows every setting. Sets *status ("ok" or
 * "failed"), *why (malloc'd; "" when ok) and res. Returns 1 when the sweep was interrupted
 * (nothing to record), else 0. */
static int run_point(const char *exe, const char *out, char *const *shared, int n_shared,
                     const sweep_grid_t *g, char *const *keyvals, const char *seed, const char *stage,
                     const char *run_dir, sweep_result_t *res, const char **status, char **why) {
    char err[4096];
    char *dir = strf("%s/%s", out, run_dir);
    char *json = strf("%s/%s.jsonl", dir, stage), *log = strf("%s/%s.log", dir, stage);
    char *err_f = strf("%s/%s.err", dir, stage);
    char **cargv = tmr_malloc(((size_t)n_shared + SWEEP_MAX_KEYS + 12) * sizeof *cargv);
    int ca = 0;
    cargv[ca++] = strf("timirec");
    for (int i = 0; i < n_shared; i++) cargv[ca++] = strf("%s", shared[i]);
    for (int k = 0; k < g->n_keys; k++) cargv[ca++] = strf("--%s=%s", g->key[k], keyvals[k]);
    cargv[ca++] = strf("--stage=%s", stage);
    cargv[ca++] = strf("--random_seed=%s", seed);
    cargv[ca++] = strf("--model_dir=%s/model/", dir);
    cargv[ca++] = strf("--model_path=");  /* the default path, inside model_dir */
    cargv[ca++] = strf("--log_file=%s", log);
    cargv[ca++] = strf("--json_log=%s", json);
    cargv[ca] = NULL;
    *status = "failed";
    *why = NULL;
    int interrupted = 0;
    if (mkdirs(dir, err, sizeof err)) {
        *why = strf("%s", err);
    } else {
        unlink(json); /* a run starts clean: no record of an interrupted earlier try */
        unlink(log);
        int ws = run_child(exe, cargv, "/dev/null", err_f, err, sizeof err);
        char last[1000];
        last_line(err_f, last, sizeof last);
        if (g_stop_signal) interrupted = 1;
        else if (ws < 0) *why = strf("%s", err);
        else if (WIFSIGNALED(ws))
            *why = strf("killed by signal %d (%s)%s%s", WTERMSIG(ws), strsignal(WTERMSIG(ws)),
                        *last ? ": " : "", last);
        else if (WEXITSTATUS(ws) != 0)
            *why = strf("exit %d: %s", WEXITSTATUS(ws), *last ? last : "no message");
        else if (sweep_read_json_log(json, res, err, sizeof err))
            *why = strf("exit 0 but %s", err);
        else if (!res->has_test)
            *why = strf("exit 0 but no test record in %s", json);
        else {
            *status = "ok";
            *why = strf("%s", "");
        }
        struct stat sb;
        if (stat(err_f, &sb) == 0 && sb.st_size == 0) unlink(err_f);
    }
    if (!*why) *why = strf("interrupted");
    for (int i = 0; i < ca; i++) free(cargv[i]);
    free(cargv);
    free(dir);
    free(json);
    free(log);
    free(err_f);
    return interrupted;
}

static char *fmt_num(const char *f, double v) { return isfinite(v) ? strf(f, v) : strf("%s", ""); }

/* The sweep.csv row of one run (empty numbers where it did not succeed). */
static char **result_row(const table_t *t, char *const *keyvals, const char *seed,
                         const char *stage, const char *run_dir, const char *status,
                         const char *why, const sweep_result_t *res, double wall_s) {
    char **row = tmr_calloc((size_t)t->n_cols, sizeof *row);
    int ok = strcmp(status, "ok") == 0;
    for (int k = 0; k < t->n_keys; k++) row[k] = strf("%s", keyvals[k]);
    row[t->c_seed] = strf("%s", seed);
    row[t->c_stage] = strf("%s", stage);
    row[t->c_status] = strf("%s", status);
    row[t->c_why] = strf("%s", why);
    row[t->c_epochs] = fmt_num("%.0f", ok ? res->epochs : NAN);
    row[t->c_best] = fmt_num("%.0f", ok ? res->best_epoch : NAN);
    for (int m = 0; m < t->n_dev; m++) {
        double v = NAN;
        for (int i = 0; ok && i < res->n_dev; i++)
            if (strcmp(res->dev_name[i], t->col[t->c_dev0 + m] + 4) == 0) v = res->dev[i];
        row[t->c_dev0 + m] = fmt_num("%.6f", v);
    }
    for (int m = 0; m < t->n_test; m++) {
        double v = NAN;
        for (int i = 0; ok && i < res->n_test; i++)
            if (strcmp(res->test_name[i], t->col[t->c_test0 + m] + 5) == 0) v = res->test[i];
        row[t->c_test0 + m] = fmt_num("%.6f", v);
    }
    row[t->c_train_s] = fmt_num("%.3f", ok ? res->train_s : NAN);
    row[t->c_eval_s] = fmt_num("%.3f", ok ? res->eval_s : NAN);
    row[t->c_sps] = fmt_num("%.1f", ok ? res->samples_per_s : NAN);
    row[t->c_wall] = fmt_num("%.2f", wall_s);
    row[t->c_dir] = strf("%s", run_dir);
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
    char *stages[2], *seeds[MAX_SEEDS];
    int n_stages, n_seeds;
    run_args_t base;        /* the shared settings as the run parses them */
    metric_spec_t spec;
    char *plot_col;         /* "test_NDCG@5" */
    table_t t;
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
    free(w->plot_col);
    table_free(&w->t);
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
        w->shared[w->n_shared++] = strf("--%.*s=%.*s", (int)name.n, name.s, (int)value.n, value.s);
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

/* Options, settings, grid, output folder and the existing sweep.csv. Returns 0 to run, or the
 * exit code (0 after --help, 2 for a usage error). */
static int sweep_setup(sweep_t *w, int argc, char **argv) {
    sweep_opts_t *o = &w->o;
    *o = (sweep_opts_t){.config = "", .grid = "", .seeds = "", .out = "", .stages = "pretrain,finetune",
                        .plot_metric = "", .max_runs = 0, .retry_failed = 0, .plots = 1};
    sweep_table(o, w->st);
    char err[4096];

    /* argv: the sweep's own flags; everything else passes through to every run. */
    w->own = tmr_malloc((size_t)(argc + 1) * sizeof *w->own);
    w->own[w->n_own++] = argv[0];
    static const char header[] = "# timirec sweep: the settings every run shares\n";
    w->settings = strf("%s", header);
    w->settings_len = sizeof header - 1;
    char *pass = NULL;
    size_t pass_len = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            options_usage(usage_text, w->st, N_SWEEP_OPTS, stdout);
            free(pass);
            return 0;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "timirec sweep: unexpected argument \"%s\" (flags are --name value)\n", a);
            free(pass);
            return 2;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nn = eq ? (size_t)(eq - name) : strlen(name);
        if (!eq && i + 1 >= argc) {
            fprintf(stderr, "timirec sweep: --%s needs a value\n", name);
            free(pass);
            return 2;
        }
        if (is_sweep_key(w->st, name, nn)) {
            w->own[w->n_own++] = argv[i];
            if (!eq) w->own[w->n_own++] = argv[++i];
            continue;
        }
        const char *value = eq ? eq + 1 : argv[++i];
        settings_add(&pass, &pass_len, name, nn, value, strlen(value));
    }
    /* The config file's sweep options first, then the command line's override them; its run
     * options go before the passed-through flags (which override them). */
    for (int i = 1; i < w->n_own; i++) {
        if (strcmp(w->own[i], "--config") == 0 && i + 1 < w->n_own) o->config = w->own[i + 1];
        else if (strncmp(w->own[i], "--config=", 9) == 0) o->config = w->own[i] + 9;
    }
    w->cfg_argv = tmr_malloc(sizeof *w->cfg_argv);
    w->cfg_argv[w->cfg_argc++] = argv[0];
    int bad = *o->config && split_config(o->config, w->st, &w->settings, &w->settings_len,
                                         &w->cfg_argv, &w->cfg_argc, err, sizeof err);
    if (pass) {
        w->settings = tmr_realloc(w->settings, w->settings_len + pass_len + 1);
        memcpy(w->settings + w->settings_len, pass, pass_len + 1);
        w->settings_len += pass_len;
        free(pass);
    }
    if (bad || options_parse(w->st, N_SWEEP_OPTS, w->cfg_argc, w->cfg_argv, 1, NULL, 0, NULL, err, sizeof err) ||
        options_parse(w->st, N_SWEEP_OPTS, w->n_own, w->own, 1, NULL, 0, NULL, err, sizeof err)) {
        fprintf(stderr, "timirec sweep: %s\n", err);
        return 2;
    }
    settings_to_flags(w);
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

    /* The shared settings and every grid key, checked by the run's own parser. */
    if (parse_as_run(w, NULL, &w->base, err, sizeof err)) {
        fprintf(stderr, "timirec sweep: the settings every run shares are not valid: %s\n", err);
        return 2;
    }
    for (int k = 0; k < g->n_keys; k++) {
        char *flag = strf("--%s=%s", g->key[k], g->value[k][0]);
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
        w->seeds[w->n_seeds++] = strf("%lld", (long long)w->base.random_seed);
    }
    w->plot_col = *o->plot_metric ? strf("test_%s", o->plot_metric)
                                  : strf("test_%s@%d", metrics_kind_name(w->spec.kind[0]), w->spec.topk[0]);
    table_init(&w->t, g, &w->spec);
    if (table_col(&w->t, w->plot_col) < 0) {
        fprintf(stderr, "timirec sweep: --plot_metric: %s is not among the test metrics (--metric "
                        "%s --topk %s)\n", w->plot_col + 5, w->base.metric, w->base.topk);
        return 2;
    }

    /* DIR: the table so far, and base.ini (a resumed sweep must share the settings of the rows
     * it keeps; the grid and the seeds may grow). */
    if (mkdirs(o->out, err, sizeof err)) {
        fprintf(stderr, "timirec sweep: %s\n", err);
        return 2;
    }
    w->base_ini = strf("%s/base.ini", o->out);
    w->csv_path = strf("%s/sweep.csv", o->out);
    w->new_ini = strf("%s/base.ini.new", o->out);
    if (table_load(&w->t, w->csv_path, err, sizeof err)) {
        fprintf(stderr, "timirec sweep: %s\n", err);
        return 2;
    }
    char *old = NULL;
    size_t old_len;
    if (w->t.n_rows > 0 && text_read_file(w->base_ini, &old, &old_len, err, sizeof err) == 0 &&
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
    /* The children run this very binary, even if the file is rebuilt during the sweep. */
    if (access("/proc/self/exe", X_OK) != 0) {
        fprintf(stderr, "timirec sweep: cannot run /proc/self/exe (this program): %s\n", strerror(errno));
        return 2;
    }
    return -1;
}

/* Every (point, seed, stage) not done yet; the table is saved after each. Returns the exit code. */
static int sweep_run(sweep_t *w) {
    const sweep_opts_t *o = &w->o;
    const sweep_grid_t *g = &w->g;
    table_t *t = &w->t;
    char err[4096];
    int pretrain_first = w->n_stages == 2 && strcmp(w->stages[0], "pretrain") == 0;
    int64_t total = g->n_points * w->n_seeds * w->n_stages, ran = 0, done_before = 0, failed = 0, at = 0;
    printf("sweep: %lld points x %d seed%s x %d stage%s = %lld runs (dataset %s) into %s\n",
           (long long)g->n_points, w->n_seeds, w->n_seeds > 1 ? "s" : "", w->n_stages,
           w->n_stages > 1 ? "s" : "", (long long)total, w->base.dataset, o->out);
    install_signals();
    int idx[SWEEP_MAX_KEYS], stopped = 0;
    double t_sweep = tmr_now();
    for (int64_t p = 0; p < g->n_points && !stopped; p++) {
        sweep_grid_point(g, p, idx);
        char *keyvals[SWEEP_MAX_KEYS];
        for (int k = 0; k < g->n_keys; k++) keyvals[k] = g->value[k][idx[k]];
        char *point = point_name(g, keyvals, " ", NULL);
        for (int si = 0; si < w->n_seeds && !stopped; si++) {
            const char *seed = w->seeds[si];
            char *run_dir = point_name(g, keyvals, "__", seed);
            for (int s = 0; s < w->n_stages && !stopped; s++) {
                at++;
                const char *stage = w->stages[s];
                int row_i = table_find(t, keyvals, seed, stage);
                int pre_i = pretrain_first && s == 1 ? table_find(t, keyvals, seed, "pretrain") : -1;
                int pre_ok = !pretrain_first || s == 0 ||
                             (pre_i >= 0 && strcmp(t->row[pre_i][t->c_status], "ok") == 0);
                if (row_i >= 0) {
                    const char *status = t->row[row_i][t->c_status];
                    int done = strcmp(status, "ok") == 0 ||
                               (strcmp(status, "failed") == 0 && !o->retry_failed) ||
                               (strcmp(status, "skipped") == 0 && !pre_ok);
                    if (done) {
                        done_before++;
                        failed += strcmp(status, "ok") != 0;
                        continue;
                    }
                }
                if (o->max_runs > 0 && ran >= o->max_runs) {
                    printf("sweep: stopped after %lld runs (--max_runs); the same command resumes\n",
                           (long long)ran);
                    stopped = 1;
                    break;
                }
                printf("[%lld/%lld] %s seed=%s %s: ", (long long)at, (long long)total, point, seed, stage);
                fflush(stdout);
                double t0 = tmr_now();
                sweep_result_t res;
                memset(&res, 0, sizeof res);
                const char *status = "skipped";
                char *why;
                if (pre_ok) {
                    if (run_point("/proc/self/exe", o->out, w->shared, w->n_shared, g, keyvals, seed, stage,
                                  run_dir, &res, &status, &why)) {
                        printf("interrupted (not recorded)\n");
                        free(why);
                        stopped = 2;
                        break;
                    }
                    ran++;
                } else {
                    why = strf("pretrain did not succeed");
                }
                double wall = tmr_now() - t0;
                char **row = result_row(t, keyvals, seed, stage, run_dir, status, why, &res,
                                        pre_ok ? wall : NAN);
                if (strcmp(status, "ok") == 0)
                    printf("ok  %s %s  best epoch %d of %d  %.1f s  %.0f samples/s\n", w->plot_col + 5,
                           row[table_col(t, w->plot_col)], res.best_epoch, res.epochs, wall,
                           res.samples_per_s);
                else {
                    failed++;
                    printf("%s: %s\n", status, why);
                }
                free(why);
                table_put(t, row);
                if (table_save(t, w->csv_path, err, sizeof err)) {
                    fprintf(stderr, "timirec sweep: %s\n", err);
                    free(run_dir);
                    free(point);
                    return 1;
                }
            }
            free(run_dir);
        }
        free(point);
    }
    printf("sweep: %lld runs now, %lld already done, %lld failed or skipped; %s [%.1f s]\n",
           (long long)ran, (long long)done_before, (long long)failed, w->csv_path, tmr_now() - t_sweep);
    if (stopped == 2) {
        printf("sweep: interrupted; run the same command again to resume\n");
        return 128 + (int)g_stop_signal;
    }
    if (o->plots) {
        int have = have_program("gnuplot"), keys_to_plot = 0;
        for (int k = 0; k < g->n_keys; k++) keys_to_plot += g->n_values[k] > 1;
        plot_spec_t ps = {o->out, t, g, w->seeds, w->stages, w->n_seeds, w->n_stages, w->plot_col,
                          w->base.dataset};
        make_plots(&ps, have);
        if (!have)
            printf("plots skipped: gnuplot is not installed (apt-get install -y gnuplot-nox); "
                   "%s/plot_*.dat and .gp are ready for it\n", o->out);
        else if (keys_to_plot == 0)
            printf("plots: none (a plot needs a grid key with 2 or more values)\n");
    }
    return failed ? 1 : 0;
}

int sweep_main(int argc, char **argv) {
    sweep_t *w = tmr_calloc(1, sizeof *w);
    int rc = sweep_setup(w, argc, argv);
    if (rc < 0) rc = sweep_run(w);
    sweep_free(w);
    free(w);
    return rc;
}
