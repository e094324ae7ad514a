/* JSON-lines logs (include/timirec/jsonl.h): the flat-record reader, and the summary of a
 * run's --json_log (the records run.c writes: "start", an "epoch" per epoch, "test"). */
#include "timirec/jsonl.h"

#include "timirec/common.h"
#include "timirec/text.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jsonl_ws(const char **p) {
    while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r') (*p)++;
}

int jsonl_string(const char **p, char *out, size_t n) {
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

int jsonl_skip(const char **p) {
    jsonl_ws(p);
    if (**p == '"') return jsonl_string(p, NULL, 0);
    if (**p == '{' || **p == '[') {
        char close = **p == '{' ? '}' : ']';
        (*p)++;
        jsonl_ws(p);
        if (**p == close) {
            (*p)++;
            return 0;
        }
        for (;;) {
            if (close == '}') {
                jsonl_ws(p);
                if (jsonl_string(p, NULL, 0)) return -1;
                jsonl_ws(p);
                if (**p != ':') return -1;
                (*p)++;
            }
            if (jsonl_skip(p)) return -1;
            jsonl_ws(p);
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

int jsonl_next_member(const char **p, char *key, size_t n, const char **value) {
    jsonl_ws(p);
    if (**p == '{' || **p == ',') (*p)++;
    jsonl_ws(p);
    if (**p == '}') {
        (*p)++;
        return 0;
    }
    if (jsonl_string(p, key, n)) return -1;
    jsonl_ws(p);
    if (**p != ':') return -1;
    (*p)++;
    jsonl_ws(p);
    *value = *p;
    return 1;
}

int jsonl_number(const char *v, double *out) {
    char *e;
    double x = strtod(v, &e);
    if (e == v) return -1;
    *out = x;
    return 0;
}

int jsonl_number_object(const char *v, int max, char (*names)[JSONL_NAME_LEN], double *values) {
    const char *p = v;
    if (*p != '{') return -1;
    char key[64];
    const char *val;
    int n = 0, rc;
    while ((rc = jsonl_next_member(&p, key, sizeof key, &val)) == 1) {
        if (n < max && jsonl_number(val, &values[n]) == 0) {
            snprintf(names[n], JSONL_NAME_LEN, "%.*s", JSONL_NAME_LEN - 1, key);
            n++;
        }
        p = val;
        if (jsonl_skip(&p)) return -1;
    }
    return rc < 0 ? -1 : n;
}

/* The members of one run-log record that the summary reads. */
typedef struct {
    char event[32];
    int epoch, best;
    double train_s, eval_s, samples_per_s;
    const char *dev, *metrics;  /* the objects, inside the record's text */
} run_record_t;

/* One record (a JSON object at p) into rec. 0 or -1 (malformed). */
static int read_run_record(const char *p, run_record_t *rec) {
    memset(rec, 0, sizeof *rec);
    char key[64];
    const char *val;
    int rc;
    while ((rc = jsonl_next_member(&p, key, sizeof key, &val)) == 1) {
        double x;
        if (strcmp(key, "event") == 0) {
            const char *q = val;
            jsonl_string(&q, rec->event, sizeof rec->event);
        } else if (strcmp(key, "epoch") == 0 && jsonl_number(val, &x) == 0) rec->epoch = (int)x;
        else if (strcmp(key, "train_s") == 0) jsonl_number(val, &rec->train_s);
        else if (strcmp(key, "eval_s") == 0) jsonl_number(val, &rec->eval_s);
        else if (strcmp(key, "samples_per_s") == 0) jsonl_number(val, &rec->samples_per_s);
        else if (strcmp(key, "best") == 0) rec->best = strncmp(val, "true", 4) == 0;
        else if (strcmp(key, "dev") == 0) rec->dev = val;
        else if (strcmp(key, "metrics") == 0) rec->metrics = val;
        p = val;
        if (jsonl_skip(&p)) break;
    }
    return rc == 0 ? 0 : -1;
}

/* Add one record to the summary; *samples sums the training samples of the epochs. */
static void add_run_record(const run_record_t *rec, jsonl_run_summary_t *r, double *samples) {
    if (strcmp(rec->event, "epoch") == 0) {
        r->epochs++;
        r->train_s += rec->train_s;
        r->eval_s += rec->eval_s;
        *samples += rec->samples_per_s * rec->train_s;
        if (rec->best && rec->dev) {
            int n = jsonl_number_object(rec->dev, JSONL_MAX_METRICS, r->dev_name, r->dev);
            if (n >= 0) {
                r->n_dev = n;
                r->best_epoch = rec->epoch;
            }
        }
    } else if (strcmp(rec->event, "test") == 0 && rec->metrics) {
        int n = jsonl_number_object(rec->metrics, JSONL_MAX_METRICS, r->test_name, r->test);
        if (n >= 0) {
            r->n_test = n;
            r->has_test = 1;
        }
    }
}

int jsonl_read_run_log(const char *path, jsonl_run_summary_t *r, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    char *buf;
    size_t len;
    if (text_read_file(path, &buf, &len, err, errlen)) return -1;
    const char *lp = buf, *end = buf + len;
    text_span_t line;
    int line_no = 0, rc = 0;
    double samples = 0;
    while (rc == 0 && text_next_line(&lp, end, &line)) {
        line_no++;
        if (text_is_blank(line)) continue;
        char *obj = tmr_strndup(line.s, line.n);
        const char *p = obj;
        run_record_t rec;
        jsonl_ws(&p);
        if (*p != '{') rc = tmr_error(err, errlen, "%s:%d: not a JSON object", path, line_no);
        else if (read_run_record(p, &rec))
            rc = tmr_error(err, errlen, "%s:%d: malformed JSON record", path, line_no);
        else add_run_record(&rec, r, &samples);
        free(obj);
    }
    free(buf);
    if (rc) return rc;
    r->samples_per_s = r->train_s > 0 ? samples / r->train_s : 0;
    return 0;
}
