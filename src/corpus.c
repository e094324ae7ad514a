/* Dataset reader and indexer (docs/MODEL.md, "The corpus").
 *
 * Each file is read whole into memory and parsed by hand (no strtol per field in the hot loop):
 * a MovieLens-1M-sized dataset, whose dev/test files carry 6 million negatives each, parses in
 * a fraction of a second. Errors name the file, the line and what is wrong, compiler style
 * (text.h):
 *   data/ml/train.csv:17: item_id "abc" is not an integer id */
#include "timirec/corpus.h"

#include "timirec/common.h"
#include "timirec/corpus_cache.h"
#include "timirec/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const corpus_phase_names[N_PHASES] = {"train", "dev", "test"};

enum { COL_USER, COL_ITEM, COL_TIME, COL_NEG, N_KNOWN_COLS };
static const char *const known_cols[N_KNOWN_COLS] = {"user_id", "item_id", "time", "neg_items"};

/* Ids must leave room for n = max + 1 in int32 and for tables indexed by id. A file whose
 * largest id is far beyond its row count was not renumbered; tables that size would only
 * waste memory (or not fit), so say so instead of allocating. */
#define MAX_ID (INT32_MAX - 1)
#define SPARSE_ID_SLACK 1000000

typedef struct {
    const char *path;
    char *buf;        /* whole file, NUL-terminated */
    size_t len;
    int n_cols;
    int col_of[N_KNOWN_COLS]; /* column index of each known column, -1 if absent */
    int64_t *line;    /* (n_rows) line number of each row: for errors found after parsing */
} file_t;

/* ------------------------------------------------------------------------------------------ */
/* Reading (lines, numbers, messages: text.h) */

/* Split at the next separator; a field in double quotes may contain the separator.
 * *p == end + 1 after the last field. */
static text_span_t next_field(const char **p, const char *end, char sep) {
    const char *s = *p;
    if (s < end && *s == '"') {
        const char *q = memchr(s + 1, '"', (size_t)(end - s - 1));
        if (q) {
            if (q + 1 >= end) *p = end + 1;         /* last field */
            else if (q[1] == sep) *p = q + 2;
            else *p = q + 1; /* text after the closing quote: an extra field, a count error */
            return (text_span_t){s + 1, (size_t)(q - s - 1)};
        }
    }
    const char *e = memchr(s, sep, (size_t)(end - s));
    if (!e) e = end;
    *p = e < end ? e + 1 : end + 1; /* end + 1: no more fields */
    return (text_span_t){s, (size_t)(e - s)};
}

/* An id: a positive integer below MAX_ID. Returns 0 or -1 with the message. */
static int parse_id(text_span_t f, const char *col, const char *path, int64_t line, int32_t *out,
                    char *err, size_t errlen) {
    char tmp[64];
    int64_t v;
    f = text_trim(f);
    int rc = text_parse_i64(f, &v);
    if (rc == 1)
        return text_line_error(err, errlen, path, line, "%s %s is not an integer id", col,
                               text_quote(f, tmp, sizeof tmp));
    if (rc == 2 || v > MAX_ID)
        return text_line_error(err, errlen, path, line, "%s %s is out of range (ids go up to %d)",
                               col, text_quote(f, tmp, sizeof tmp), MAX_ID);
    if (v < 0)
        return text_line_error(err, errlen, path, line, "%s %lld is negative (ids start at 1)", col,
                               (long long)v);
    if (v == 0)
        return text_line_error(err, errlen, path, line, "%s is 0, the padding id (ids start at 1)",
                               col);
    *out = (int32_t)v;
    return 0;
}

/* A neg_items list "[12, 7, 3051]". Appends to *neg (growing *cap); returns the count or -1.
 * Dev/test files hold millions of these ids, so the common case is a tight digit loop; any
 * element it cannot take goes through parse_id for the exact message. */
static int64_t parse_neg_list(text_span_t f, const char *path, int64_t line, int32_t **neg,
                              int64_t *n_neg_total, int64_t *cap, char *err, size_t errlen) {
    char tmp[64];
    text_span_t whole = text_trim(f);
    const char *p = whole.s, *end = whole.s + whole.n;
    if (p >= end || *p != '[' || end[-1] != ']')
        return text_line_error(err, errlen, path, line,
                               "neg_items %s is not a list like [12, 7, 3051]",
                               text_quote(whole, tmp, sizeof tmp));
    p++;
    end--;
    if (text_is_blank((text_span_t){p, (size_t)(end - p)})) return 0; /* [] */
    int64_t count = 0;
    while (p <= end) {
        const char *s = p;
        while (s < end && *s == ' ') s++;
        uint64_t v = 0; /* ten digits fit: 9999999999 is refused below, never wrapped */
        const char *d = s;
        while (d < end && (unsigned)(*d - '0') <= 9 && d - s < 10) v = v * 10 + (uint64_t)(*d++ - '0');
        const char *e = d;
        while (e < end && *e == ' ') e++;
        int ok = d > s && v >= 1 && v <= (uint64_t)MAX_ID && (e == end || *e == ',');
        if (!ok) { /* slow path: find the element's end and let parse_id explain */
            const char *comma = memchr(p, ',', (size_t)(end - p));
            char what[32];
            int32_t id;
            snprintf(what, sizeof what, "neg_items[%lld]", (long long)count);
            if (parse_id((text_span_t){p, (size_t)((comma ? comma : end) - p)}, what, path, line,
                         &id, err, errlen))
                return -1;
            return text_line_error(err, errlen, path, line, "%s is malformed", what);
        }
        if (*n_neg_total == *cap) {
            *cap = *cap ? 2 * *cap : 4096;
            *neg = tmr_realloc(*neg, tmr_mul_size((size_t)*cap, sizeof **neg));
        }
        (*neg)[(*n_neg_total)++] = (int32_t)v;
        count++;
        if (e == end) break;
        p = e + 1;
    }
    return count;
}

static int64_t count_lines(const char *buf, size_t len) {
    int64_t n = 0;
    for (const char *p = buf; (p = memchr(p, '\n', len - (size_t)(p - buf))); p++) n++;
    return n + 1;
}

/* "tab" or "','": the separator as messages name it. */
static const char *sep_name(char sep, char out[8]) {
    snprintf(out, 8, sep == '\t' ? "tab" : "'%c'", sep);
    return out;
}

/* Header: names the columns; required ones must be present, each at most once. */
static int parse_header(file_t *f, text_span_t line, int64_t line_no, char sep, char *err,
                        size_t errlen) {
    char tmp[64], sname[8];
    for (int k = 0; k < N_KNOWN_COLS; k++) f->col_of[k] = -1;
    f->n_cols = 0;
    const char *p = line.s, *end = line.s + line.n;
    /* A UTF-8 byte order mark (spreadsheet exports) is not part of the first name. */
    if (line.n >= 3 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB &&
        (unsigned char)p[2] == 0xBF)
        p += 3;
    while (p <= end) {
        text_span_t name = text_trim(next_field(&p, end, sep));
        for (int k = 0; k < N_KNOWN_COLS; k++) {
            if (text_eq(name, known_cols[k])) {
                if (f->col_of[k] >= 0)
                    return text_line_error(err, errlen, f->path, line_no,
                                           "column %s appears twice in the header", known_cols[k]);
                f->col_of[k] = f->n_cols;
            }
        }
        if (name.n == 0)
            return text_line_error(err, errlen, f->path, line_no,
                                   "empty column name in the header (column %d)", f->n_cols + 1);
        f->n_cols++;
    }
    for (int k = 0; k < COL_NEG; k++) {
        if (f->col_of[k] < 0)
            return text_line_error(err, errlen, f->path, line_no,
                                   "missing column %s (the header must name user_id, item_id and "
                                   "time, separated by %s; it has %d column%s: %s)",
                                   known_cols[k], sep_name(sep, sname), f->n_cols,
                                   f->n_cols == 1 ? "" : "s", text_quote(line, tmp, sizeof tmp));
    }
    return 0;
}

static int parse_file(file_t *f, corpus_phase_t *ph, char sep, char *err, size_t errlen) {
    const char *cursor = f->buf, *end = f->buf + f->len;
    int64_t line_no = 0;
    text_span_t header = {f->buf, 0};
    /* Skip leading blank lines; the first non-blank line is the header. */
    while (text_next_line(&cursor, end, &header)) {
        line_no++;
        if (!text_is_blank(header)) break;
    }
    if (text_is_blank(header))
        return text_line_error(err, errlen, f->path, 0, "empty file (expected a header line "
                               "naming user_id, item_id, time)");
    if (parse_header(f, header, line_no, sep, err, errlen)) return -1;
    ph->has_neg = f->col_of[COL_NEG] >= 0;

    int64_t cap = count_lines(cursor, (size_t)(end - cursor));
    ph->user = tmr_malloc(tmr_mul_size((size_t)cap, sizeof *ph->user));
    ph->item = tmr_malloc(tmr_mul_size((size_t)cap, sizeof *ph->item));
    ph->time = tmr_malloc(tmr_mul_size((size_t)cap, sizeof *ph->time));
    f->line = tmr_malloc(tmr_mul_size((size_t)cap, sizeof *f->line));
    int64_t neg_cap = 0, neg_total = 0;
    int32_t *neg = NULL;
    int64_t n = 0;
    char tmp[64], sname[8];
    text_span_t line;

    while (text_next_line(&cursor, end, &line)) {
        line_no++;
        if (text_is_blank(line)) continue; /* pandas skips blank lines too */
        if (line.n == header.n && memcmp(line.s, header.s, header.n) == 0) {
            free(neg);
            return text_line_error(err, errlen, f->path, line_no, "the header line appears again "
                                   "(files concatenated?)");
        }
        const char *p = line.s, *line_end = line.s + line.n;
        int col = 0;
        while (p <= line_end) {
            text_span_t field = next_field(&p, line_end, sep);
            if (col >= f->n_cols) {
                col++;
                continue;
            }
            int rc = 0;
            if (col == f->col_of[COL_USER]) {
                rc = parse_id(field, "user_id", f->path, line_no, &ph->user[n], err, errlen);
            } else if (col == f->col_of[COL_ITEM]) {
                rc = parse_id(field, "item_id", f->path, line_no, &ph->item[n], err, errlen);
            } else if (col == f->col_of[COL_TIME]) {
                text_span_t t = text_trim(field);
                int prc = text_parse_i64(t, &ph->time[n]);
                if (prc)
                    rc = text_line_error(err, errlen, f->path, line_no, "time %s is not %s",
                                         text_quote(t, tmp, sizeof tmp),
                                         prc == 1 ? "an integer" : "a 64-bit integer");
            } else if (col == f->col_of[COL_NEG]) {
                int64_t cnt = parse_neg_list(field, f->path, line_no, &neg, &neg_total, &neg_cap,
                                             err, errlen);
                if (cnt < 0) rc = -1;
                else if (n == 0) ph->n_neg = (int32_t)cnt;
                else if (cnt != ph->n_neg)
                    rc = text_line_error(err, errlen, f->path, line_no, "neg_items has %lld items "
                                         "but earlier rows have %d (every row of a file needs the "
                                         "same count)", (long long)cnt, ph->n_neg);
            }
            if (rc) {
                free(neg);
                return -1;
            }
            col++;
        }
        if (col != f->n_cols) {
            free(neg);
            return text_line_error(err, errlen, f->path, line_no, "%d field%s but the header has "
                                   "%d columns (separator: %s)", col, col == 1 ? "" : "s",
                                   f->n_cols, sep_name(sep, sname));
        }
        f->line[n] = line_no;
        n++;
    }
    if (n == 0) {
        free(neg);
        return text_line_error(err, errlen, f->path, 0, "no data rows after the header");
    }
    ph->n_rows = n;
    ph->neg = neg ? neg : tmr_malloc(sizeof(int32_t));
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Indexing */

typedef struct {
    int64_t time;
    int64_t g; /* global row in train ++ dev ++ test order: the stable tie-break */
} time_key_t;

static int cmp_time_key(const void *a, const void *b) {
    const time_key_t *x = a, *y = b;
    if (x->time != y->time) return x->time < y->time ? -1 : 1;
    return (x->g > y->g) - (x->g < y->g);
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int corpus_sorted_contains(const int32_t *list, int64_t n, int32_t item) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (list[mid] < item) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && list[lo] == item;
}

/* Sort each user's segment of items and drop repeats; compacts into a new CSR. */
static void build_clicked(int32_t n_users, const int64_t *count, int32_t *items_by_user,
                          const int64_t *off_in, int64_t **off_out, int32_t **items_out,
                          int32_t *max_count) {
    int64_t *uniq = tmr_calloc((size_t)n_users, sizeof *uniq);
#pragma omp parallel for schedule(dynamic, 256)
    for (int32_t u = 0; u < n_users; u++) {
        int32_t *seg = items_by_user + off_in[u];
        int64_t n = count[u];
        if (n > 1) qsort(seg, (size_t)n, sizeof *seg, cmp_i32);
        int64_t k = 0;
        for (int64_t i = 0; i < n; i++)
            if (k == 0 || seg[i] != seg[k - 1]) seg[k++] = seg[i];
        uniq[u] = k;
    }
    int64_t *off = tmr_malloc(tmr_mul_size((size_t)n_users + 1, sizeof *off));
    off[0] = 0;
    int32_t mx = 0;
    for (int32_t u = 0; u < n_users; u++) {
        off[u + 1] = off[u] + uniq[u];
        if (uniq[u] > mx) mx = (int32_t)uniq[u];
    }
    int32_t *items = tmr_malloc(tmr_mul_size((size_t)off[n_users] + 1, sizeof *items));
    for (int32_t u = 0; u < n_users; u++)
        memcpy(items + off[u], items_by_user + off_in[u], (size_t)uniq[u] * sizeof *items);
    free(uniq);
    *off_out = off;
    *items_out = items;
    if (max_count) *max_count = mx;
}

/* Sequences and positions: rows bucketed by user in concatenated order (a stable counting
 * sort), then each user's rows sorted by time with the concatenated index breaking ties.
 * Restricted to one user that is exactly the reference's stable sort on (time, user_id). */
static void build_sequences(corpus_t *c) {
    int64_t total = 0;
    for (int p = 0; p < N_PHASES; p++) total += c->phase[p].n_rows;
    int64_t *count = tmr_calloc((size_t)c->n_users + 1, sizeof *count);
    for (int p = 0; p < N_PHASES; p++)
        for (int64_t r = 0; r < c->phase[p].n_rows; r++) count[c->phase[p].user[r]]++;
    c->seq_off = tmr_malloc(tmr_mul_size((size_t)c->n_users + 1, sizeof *c->seq_off));
    c->seq_off[0] = 0;
    for (int32_t u = 0; u < c->n_users; u++) c->seq_off[u + 1] = c->seq_off[u] + count[u];

    /* Bucket the global row ids by user. */
    int64_t *fill = tmr_malloc(tmr_mul_size((size_t)c->n_users, sizeof *fill));
    memcpy(fill, c->seq_off, (size_t)c->n_users * sizeof *fill);
    time_key_t *keys = tmr_malloc(tmr_mul_size((size_t)total, sizeof *keys));
    int64_t base[N_PHASES];
    int64_t g = 0;
    for (int p = 0; p < N_PHASES; p++) {
        base[p] = g;
        const corpus_phase_t *ph = &c->phase[p];
        for (int64_t r = 0; r < ph->n_rows; r++, g++)
            keys[fill[ph->user[r]]++] = (time_key_t){ph->time[r], g};
    }
    free(fill);

    c->seq_item = tmr_malloc(tmr_mul_size((size_t)total + 1, sizeof *c->seq_item));
    int64_t n_dup = 0, n_seq = 0, n_single = 0;
#pragma omp parallel for schedule(dynamic, 256) reduction(+ : n_dup, n_seq, n_single)
    for (int32_t u = 0; u < c->n_users; u++) {
        time_key_t *seg = keys + c->seq_off[u];
        int64_t n = count[u];
        if (n == 0) continue;
        n_seq++;
        if (n == 1) n_single++;
        int sorted = 1;
        for (int64_t i = 1; i < n && sorted; i++) sorted = seg[i - 1].time <= seg[i].time;
        if (!sorted) qsort(seg, (size_t)n, sizeof *seg, cmp_time_key);
        for (int64_t i = 0; i < n; i++) {
            int64_t gr = seg[i].g;
            int p = gr >= base[2] ? 2 : gr >= base[1] ? 1 : 0;
            int64_t r = gr - base[p];
            c->phase[p].position[r] = (int32_t)i;
            c->seq_item[c->seq_off[u] + i] = c->phase[p].item[r];
        }
        /* Repeated (item, time) within a user: the reference's merge on (user, item, time)
         * would multiply such rows; we keep each once and report the count. */
        for (int64_t i = 0; i < n;) {
            int64_t j = i + 1;
            while (j < n && seg[j].time == seg[i].time) j++;
            for (int64_t a = i; a < j; a++)
                for (int64_t b = a + 1; b < j && b < a + 64; b++)
                    if (c->seq_item[c->seq_off[u] + a] == c->seq_item[c->seq_off[u] + b]) {
                        n_dup++;
                        break;
                    }
            i = j;
        }
    }
    free(keys);
    free(count);
    c->n_duplicate_rows = n_dup;
    c->n_seq_users = n_seq;
    c->n_single_users = n_single;
}

static void build_instances(corpus_phase_t *ph) {
    int64_t n = 0;
    for (int64_t r = 0; r < ph->n_rows; r++) n += ph->position[r] > 0;
    ph->inst_row = tmr_malloc(tmr_mul_size((size_t)n + 1, sizeof *ph->inst_row));
    ph->n_inst = 0;
    for (int64_t r = 0; r < ph->n_rows; r++)
        if (ph->position[r] > 0) ph->inst_row[ph->n_inst++] = r;
}

static void build_clicked_sets(corpus_t *c) {
    for (int which = 0; which < 2; which++) { /* 0: train rows only, 1: all rows */
        int last_phase = which == 0 ? PHASE_TRAIN : PHASE_TEST;
        int64_t *count = tmr_calloc((size_t)c->n_users + 1, sizeof *count);
        for (int p = 0; p <= last_phase; p++)
            for (int64_t r = 0; r < c->phase[p].n_rows; r++) count[c->phase[p].user[r]]++;
        int64_t *off = tmr_malloc(tmr_mul_size((size_t)c->n_users + 1, sizeof *off));
        off[0] = 0;
        for (int32_t u = 0; u < c->n_users; u++) off[u + 1] = off[u] + count[u];
        int32_t *items = tmr_malloc(tmr_mul_size((size_t)off[c->n_users] + 1, sizeof *items));
        int64_t *fill = tmr_malloc(tmr_mul_size((size_t)c->n_users, sizeof *fill));
        memcpy(fill, off, (size_t)c->n_users * sizeof *fill);
        for (int p = 0; p <= last_phase; p++)
            for (int64_t r = 0; r < c->phase[p].n_rows; r++)
                items[fill[c->phase[p].user[r]]++] = c->phase[p].item[r];
        free(fill);
        if (which == 0)
            build_clicked(c->n_users, count, items, off, &c->train_off, &c->train_items,
                          &c->max_train_clicked);
        else
            build_clicked(c->n_users, count, items, off, &c->all_off, &c->all_items, NULL);
        free(items);
        free(off);
        free(count);
    }
}

/* ------------------------------------------------------------------------------------------ */

void corpus_file_path(const corpus_opts_t *opts, const char *name, char *out, size_t n) {
    const char *root = opts->path ? opts->path : ".";
    const char *dataset = opts->dataset ? opts->dataset : "";
    size_t rl = strlen(root);
    snprintf(out, n, "%s%s%s%s%s", root, rl && root[rl - 1] == '/' ? "" : "/", dataset,
             *dataset && *name ? "/" : "", name);
}

int corpus_load(const corpus_opts_t *opts, corpus_t *c, char *err, size_t errlen) {
    if (opts->cache == CORPUS_CACHE_OFF) return corpus_parse(opts, c, err, errlen);
    return corpus_cache_load(opts, c, err, errlen);
}

int corpus_parse(const corpus_opts_t *opts, corpus_t *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    char sep = opts->sep ? opts->sep : '\t';
    const char *root = opts->path ? opts->path : ".";
    const char *dataset = opts->dataset ? opts->dataset : "";
    file_t files[N_PHASES];
    memset(files, 0, sizeof files);
    char paths[N_PHASES][4096];
    int rc = 0;
    char errs[N_PHASES][1024] = {{0}};

    for (int p = 0; p < N_PHASES; p++) {
        char name[16];
        snprintf(name, sizeof name, "%s.csv", corpus_phase_names[p]);
        corpus_file_path(opts, name, paths[p], sizeof paths[p]);
        files[p].path = paths[p];
    }
    /* The three files parse independently (on as many cores as there are). */
    int fail[N_PHASES] = {0};
#pragma omp parallel for schedule(static, 1)
    for (int p = 0; p < N_PHASES; p++) {
        fail[p] = text_read_file(paths[p], &files[p].buf, &files[p].len, errs[p], sizeof errs[p]);
        if (!fail[p]) fail[p] = parse_file(&files[p], &c->phase[p], sep, errs[p], sizeof errs[p]);
    }
    for (int p = 0; p < N_PHASES && !rc; p++)
        if (fail[p]) rc = tmr_error(err, errlen, "%s", errs[p]);

    /* n_users and n_items as the reference counts them: 1 + the largest id anywhere. */
    int64_t total_rows = 0;
    for (int p = 0; p < N_PHASES && !rc; p++) {
        const corpus_phase_t *ph = &c->phase[p];
        total_rows += ph->n_rows;
        for (int64_t r = 0; r < ph->n_rows; r++) {
            if (ph->user[r] >= c->n_users) c->n_users = ph->user[r] + 1;
            if (ph->item[r] >= c->n_items) c->n_items = ph->item[r] + 1;
        }
    }
    if (!rc && c->n_users > 64 * total_rows + SPARSE_ID_SLACK)
        rc = tmr_error(err, errlen, "%s/%s: largest user_id is %d for only %lld rows: ids are not "
                       "numbered densely from 1 (renumber with `timirec prepare --format csv`)",
                       root, dataset, c->n_users - 1, (long long)total_rows);
    if (!rc && c->n_items > 64 * total_rows + SPARSE_ID_SLACK)
        rc = tmr_error(err, errlen, "%s/%s: largest item_id is %d for only %lld rows: ids are not "
                       "numbered densely from 1 (renumber with `timirec prepare --format csv`)",
                       root, dataset, c->n_items - 1, (long long)total_rows);
    /* Negatives must be real items (the reference asserts the same). */
    for (int p = 0; p < N_PHASES && !rc; p++) {
        const corpus_phase_t *ph = &c->phase[p];
        int64_t n = ph->n_rows * (int64_t)ph->n_neg;
        for (int64_t i = 0; i < n; i++) {
            if (ph->neg[i] >= c->n_items) {
                rc = text_line_error(err, errlen, files[p].path, files[p].line[i / ph->n_neg],
                                     "neg_items[%lld] = %d is past the largest item id %d of "
                                     "the dataset", (long long)(i % ph->n_neg), ph->neg[i],
                                     c->n_items - 1);
                break;
            }
        }
    }
    for (int p = 0; p < N_PHASES; p++) {
        free(files[p].buf);
        free(files[p].line);
    }
    if (rc) {
        corpus_free(c);
        return -1;
    }

    for (int p = 0; p < N_PHASES; p++)
        c->phase[p].position = tmr_malloc(tmr_mul_size((size_t)c->phase[p].n_rows,
                                                       sizeof(int32_t)));
    build_sequences(c);
    for (int p = 0; p < N_PHASES; p++) build_instances(&c->phase[p]);
    build_clicked_sets(c);
    return 0;
}

void corpus_free(corpus_t *c) {
    if (c->map) { /* the arrays point into the cache file's mapping */
        corpus_cache_unmap(c->map, c->map_bytes);
        memset(c, 0, sizeof *c);
        return;
    }
    for (int p = 0; p < N_PHASES; p++) {
        corpus_phase_t *ph = &c->phase[p];
        free(ph->user);
        free(ph->item);
        free(ph->time);
        free(ph->position);
        free(ph->neg);
        free(ph->inst_row);
    }
    free(c->seq_off);
    free(c->seq_item);
    free(c->train_off);
    free(c->train_items);
    free(c->all_off);
    free(c->all_items);
    memset(c, 0, sizeof *c);
}
