/* Raw interaction logs -> train/dev/test.csv by the reference framework's recipe
 * (prepare.h has the recipe).
 *
 * Pipeline of prepare_write, every step O(n) or a radix sort:
 *   rank users and items (ascending original id) -> stable sort of row indices by (time, user)
 *   -> drop (user, item, time) duplicates -> per-user roles (train/dev/test) -> CSR of each
 *   user's items -> three files written in parallel batches to temp names, then renamed. */
#include "timirec/prepare.h"

#include "timirec/common.h"
#include "timirec/options.h"
#include "timirec/rng.h"
#include "timirec/text.h"

#include <errno.h>
#include <inttypes.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void interactions_free(interactions_t *x) {
    if (!x) return;
    free(x->user);
    free(x->item);
    free(x->time);
    memset(x, 0, sizeof *x);
}

/* ------------------------------------------------------------------------------------------
 * Reading raw logs (file reading, lines, numbers and "path:LINE: problem" messages: text.h;
 * the field splitting of the raw formats stays here)
 * ---------------------------------------------------------------------------------------- */

/* Append one interaction, growing the arrays geometrically. */
static void push(interactions_t *x, int64_t *cap, int64_t u, int64_t i, int64_t t) {
    if (x->n == *cap) {
        *cap = *cap ? 2 * *cap : 4096;
        size_t bytes = tmr_mul_size((size_t)*cap, sizeof(int64_t));
        x->user = tmr_realloc(x->user, bytes);
        x->item = tmr_realloc(x->item, bytes);
        x->time = tmr_realloc(x->time, bytes);
    }
    x->user[x->n] = u;
    x->item[x->n] = i;
    x->time[x->n] = t;
    x->n++;
}

/* How fields are separated: runs of blanks, one character, or "::". */
typedef enum { SEP_BLANKS, SEP_CHAR, SEP_DCOLON } sep_mode_t;

typedef struct {
    const char *p, *end;  /* p == NULL: no more fields */
    sep_mode_t mode;
    char sep;
} fields_t;

static fields_t fields_of(text_span_t line, sep_mode_t mode, char sep) {
    fields_t it = {line.s, line.s + line.n, mode, sep};
    return it;
}

/* Next field; 0 when there is none. SEP_CHAR/SEP_DCOLON keep empty fields ("a,,b" has 3). */
static int next_field(fields_t *it, text_span_t *f) {
    if (!it->p) return 0;
    if (it->mode == SEP_BLANKS) {
        while (it->p < it->end && (*it->p == ' ' || *it->p == '\t')) it->p++;
        if (it->p == it->end) return 0;
        const char *s = it->p;
        while (it->p < it->end && *it->p != ' ' && *it->p != '\t') it->p++;
        f->s = s;
        f->n = (size_t)(it->p - s);
        return 1;
    }
    const char *s = it->p, *q = s;
    size_t seplen = it->mode == SEP_DCOLON ? 2 : 1;
    while (q < it->end) {
        if (it->mode == SEP_CHAR ? *q == it->sep : (q + 1 < it->end && q[0] == ':' && q[1] == ':'))
            break;
        q++;
    }
    f->s = s;
    f->n = (size_t)(q - s);
    it->p = q < it->end ? q + seplen : NULL;
    return 1;
}

/* A whole field as a signed 64-bit integer, surrounding blanks allowed: 0, 1 not a number,
 * 2 out of range (text_parse_i64). */
static int parse_int(text_span_t f, int64_t *out) { return text_parse_i64(text_trim(f), out); }

/* A decimal number (sign, digits, optional fraction and exponent): the rating column. */
static int is_number(text_span_t f) {
    f = text_trim(f);
    size_t i = 0, digits = 0;
    if (i < f.n && (f.s[i] == '-' || f.s[i] == '+')) i++;
    while (i < f.n && f.s[i] >= '0' && f.s[i] <= '9') i++, digits++;
    if (i < f.n && f.s[i] == '.') {
        i++;
        while (i < f.n && f.s[i] >= '0' && f.s[i] <= '9') i++, digits++;
    }
    if (!digits) return 0;
    if (i < f.n && (f.s[i] == 'e' || f.s[i] == 'E')) {
        i++;
        if (i < f.n && (f.s[i] == '-' || f.s[i] == '+')) i++;
        size_t e0 = i;
        while (i < f.n && f.s[i] >= '0' && f.s[i] <= '9') i++;
        if (i == e0) return 0;
    }
    return i == f.n;
}

/* Error for a field parse_int refused (rc 1 or 2), quoting (a prefix of) it. */
static int bad_int(char *err, size_t errlen, const char *path, int64_t line, const char *what,
                   int col, text_span_t f, int rc) {
    char q[64];
    return text_line_error(err, errlen, path, line, "%s (field %d) is not %s: %s", what, col,
                           rc == 2 ? "a 64-bit integer" : "an integer", text_quote(f, q, sizeof q));
}

/* udata / movielens: exactly `user item rating time`. */
static int read_fixed4(const char *path, const char *text, size_t len, sep_mode_t mode,
                       interactions_t *x, int64_t *cap, char *err, size_t errlen) {
    static const char *const names[4] = {"user", "item", "rating", "time"};
    const char *p = text, *end = text + len;
    text_span_t line;
    int64_t ln = 0;
    while (text_next_line(&p, end, &line)) {
        ln++;
        if (text_is_blank(line)) continue;
        fields_t it = fields_of(line, mode, 0);
        text_span_t f[4], extra;
        int nf = 0;
        while (nf < 4 && next_field(&it, &f[nf])) nf++;
        if (nf < 4 || next_field(&it, &extra)) {
            while (next_field(&it, &extra)) nf++;
            return text_line_error(err, errlen, path, ln, "expected 4 fields (user, item, rating, time)%s, found %s%d",
                                   mode == SEP_DCOLON ? " separated by '::'" : "",
                                   nf > 4 ? "more than " : "", nf > 4 ? 4 : nf);
        }
        int64_t v[4];
        for (int c = 0; c < 4; c++) {
            if (c == 2) {
                char q[64];
                if (!is_number(f[2]))
                    return text_line_error(err, errlen, path, ln, "rating (field 3) is not a number: %s",
                                           text_quote(f[2], q, sizeof q));
                continue;
            }
            int rc = parse_int(f[c], &v[c]);
            if (rc != 0) return bad_int(err, errlen, path, ln, names[c], c + 1, f[c], rc);
        }
        push(x, cap, v[0], v[1], v[3]);
    }
    if (x->n == 0) return text_line_error(err, errlen, path, ln + 1, "no interactions (empty file)");
    return 0;
}

/* Strip one pair of surrounding double quotes from a header name. */
static text_span_t unquote(text_span_t f) {
    f = text_trim(f);
    if (f.n >= 2 && f.s[0] == '"' && f.s[f.n - 1] == '"') f.s++, f.n -= 2;
    return f;
}

/* csv: header with user_id, item_id, time; tab- or comma-separated (from the header). */
static int read_csv(const char *path, const char *text, size_t len, interactions_t *x,
                    int64_t *cap, char *err, size_t errlen) {
    const char *p = text, *end = text + len;
    text_span_t line = {text, 0};
    int64_t ln = 0;
    while (text_next_line(&p, end, &line)) {
        ln++;
        if (!text_is_blank(line)) break;
    }
    if (text_is_blank(line))
        return text_line_error(err, errlen, path, ln + (ln == 0), "empty file: expected a header naming user_id, item_id and time");
    char sep = memchr(line.s, '\t', line.n) ? '\t' : ',';
    int col[3] = {-1, -1, -1}, n_cols = 0;
    static const char *const names[3] = {"user_id", "item_id", "time"};
    fields_t it = fields_of(line, SEP_CHAR, sep);
    text_span_t f;
    for (; next_field(&it, &f); n_cols++)
        for (int k = 0; k < 3; k++)
            if (col[k] < 0 && text_eq(unquote(f), names[k])) col[k] = n_cols;
    for (int k = 0; k < 3; k++)
        if (col[k] < 0)
            return text_line_error(err, errlen, path, ln, "header has no column '%s' (want user_id, item_id and time, separated by %s)",
                                   names[k], sep == '\t' ? "tabs" : "commas");
    int64_t header_ln = ln;
    while (text_next_line(&p, end, &line)) {
        ln++;
        if (text_is_blank(line)) continue;
        int64_t v[3];
        int nf = 0;
        it = fields_of(line, SEP_CHAR, sep);
        for (; next_field(&it, &f); nf++)
            for (int k = 0; k < 3; k++) {
                int rc = nf == col[k] ? parse_int(f, &v[k]) : 0;
                if (rc != 0) return bad_int(err, errlen, path, ln, names[k], nf + 1, f, rc);
            }
        if (nf != n_cols)
            return text_line_error(err, errlen, path, ln, "expected %d fields as in the header, found %d", n_cols, nf);
        push(x, cap, v[0], v[1], v[2]);
    }
    if (x->n == 0) return text_line_error(err, errlen, path, header_ln + 1, "no data rows after the header");
    return 0;
}

/* seq: `user item item ...`; time = running index over the whole file. */
static int read_seq(const char *path, const char *text, size_t len, interactions_t *x,
                    int64_t *cap, char *err, size_t errlen) {
    const char *p = text, *end = text + len;
    text_span_t line, f;
    int64_t ln = 0, t = 0;
    while (text_next_line(&p, end, &line)) {
        ln++;
        if (text_is_blank(line)) continue;
        fields_t it = fields_of(line, SEP_BLANKS, 0);
        int64_t user, item;
        next_field(&it, &f); /* non-blank: there is one */
        int rc = parse_int(f, &user);
        if (rc != 0) return bad_int(err, errlen, path, ln, "user", 1, f, rc);
        int col = 1;
        for (; next_field(&it, &f); col++) {
            if ((rc = parse_int(f, &item)) != 0) return bad_int(err, errlen, path, ln, "item", col + 1, f, rc);
            push(x, cap, user, item, t++);
        }
        if (col == 1)
            return text_line_error(err, errlen, path, ln, "expected a user id followed by at least one item, found 1 field");
    }
    if (x->n == 0) return text_line_error(err, errlen, path, ln + 1, "no interactions (empty file)");
    return 0;
}

int interactions_read(const char *path, const char *format, interactions_t *x, char *err,
                      size_t errlen) {
    memset(x, 0, sizeof *x);
    int is_udata = strcmp(format, "udata") == 0, is_ml = strcmp(format, "movielens") == 0;
    int is_csv = strcmp(format, "csv") == 0, is_seq = strcmp(format, "seq") == 0;
    if (!is_udata && !is_ml && !is_csv && !is_seq)
        return tmr_error(err, errlen, "unknown format '%s' (want movielens, udata, csv or seq)", format);
    char *text = NULL;
    size_t len = 0;
    if (text_read_file(path, &text, &len, err, errlen) != 0) return -1;
    int64_t cap = 0;
    int rc;
    if (is_csv) rc = read_csv(path, text, len, x, &cap, err, errlen);
    else if (is_seq) rc = read_seq(path, text, len, x, &cap, err, errlen);
    else rc = read_fixed4(path, text, len, is_ml ? SEP_DCOLON : SEP_BLANKS, x, &cap, err, errlen);
    free(text);
    if (rc != 0) interactions_free(x);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Sorting and ranking
 * ---------------------------------------------------------------------------------------- */

static int bit_length(uint64_t v) {
    int b = 0;
    while (v) b++, v >>= 1;
    return b;
}

/* Stable LSD radix sort of idx[0..n) by key[idx[i]], looking at the low `bits` bits.
 * tmp: (n) scratch. 11-bit digits; a digit that is the same for every row is skipped. */
static void radix_sort(uint32_t *idx, uint32_t *tmp, size_t n, const uint64_t *key, int bits) {
    enum { DIGIT = 11, BUCKETS = 1 << DIGIT };
    size_t *count = tmr_malloc(BUCKETS * sizeof(size_t));
    uint32_t *src = idx, *dst = tmp;
    for (int shift = 0; shift < bits; shift += DIGIT) {
        memset(count, 0, BUCKETS * sizeof(size_t));
        for (size_t i = 0; i < n; i++) count[(key[src[i]] >> shift) & (BUCKETS - 1)]++;
        if (n && count[(key[src[0]] >> shift) & (BUCKETS - 1)] == n) continue;
        size_t sum = 0;
        for (int b = 0; b < BUCKETS; b++) {
            size_t c = count[b];
            count[b] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++) dst[count[(key[src[i]] >> shift) & (BUCKETS - 1)]++] = src[i];
        uint32_t *sw = src;
        src = dst;
        dst = sw;
    }
    if (src != idx) memcpy(idx, src, n * sizeof(uint32_t));
    free(count);
}

/* rank[i] = 0-based rank of v[i] among the distinct values (ascending); *n_distinct.
 * Dense ids (range within a few times n, the usual case) use a presence table, others a sort. */
static uint32_t *rank_values(const int64_t *v, size_t n, int64_t *n_distinct) {
    uint32_t *rank = tmr_malloc(tmr_mul_size(n, sizeof(uint32_t)));
    int64_t lo = v[0], hi = v[0];
    for (size_t i = 1; i < n; i++) {
        if (v[i] < lo) lo = v[i];
        if (v[i] > hi) hi = v[i];
    }
    uint64_t range = (uint64_t)hi - (uint64_t)lo; /* exact even across the sign */
    if (range < 4 * (uint64_t)n + 4096) {
        uint32_t *table = tmr_calloc((size_t)range + 1, sizeof(uint32_t));
        for (size_t i = 0; i < n; i++) table[(uint64_t)v[i] - (uint64_t)lo] = 1;
        uint32_t next = 0;
        for (uint64_t r = 0; r <= range; r++) {
            uint32_t present = table[r];
            table[r] = next;
            next += present;
        }
        for (size_t i = 0; i < n; i++) rank[i] = table[(uint64_t)v[i] - (uint64_t)lo];
        *n_distinct = next;
        free(table);
        return rank;
    }
    uint64_t *key = tmr_malloc(tmr_mul_size(n, sizeof(uint64_t)));
    uint32_t *idx = tmr_malloc(tmr_mul_size(n, sizeof(uint32_t)));
    uint32_t *tmp = tmr_malloc(tmr_mul_size(n, sizeof(uint32_t)));
    for (size_t i = 0; i < n; i++) {
        key[i] = (uint64_t)v[i] - (uint64_t)lo;
        idx[i] = (uint32_t)i;
    }
    radix_sort(idx, tmp, n, key, bit_length(range));
    uint32_t next = 0;
    for (size_t k = 0; k < n; k++) {
        if (k > 0 && key[idx[k]] != key[idx[k - 1]]) next++;
        rank[idx[k]] = next;
    }
    *n_distinct = (int64_t)next + 1;
    free(key);
    free(idx);
    free(tmp);
    return rank;
}

/* Row indices sorted stably by (time, user): LSD, so user first, then time. (n) */
static uint32_t *sort_rows(const int64_t *time, const uint32_t *urank, size_t n, int64_t n_users) {
    uint32_t *idx = tmr_malloc(tmr_mul_size(n, sizeof(uint32_t)));
    uint32_t *tmp = tmr_malloc(tmr_mul_size(n, sizeof(uint32_t)));
    uint64_t *key = tmr_malloc(tmr_mul_size(n, sizeof(uint64_t)));
    int64_t lo = time[0], hi = time[0];
    for (size_t i = 0; i < n; i++) {
        idx[i] = (uint32_t)i;
        key[i] = urank[i];
        if (time[i] < lo) lo = time[i];
        if (time[i] > hi) hi = time[i];
    }
    radix_sort(idx, tmp, n, key, bit_length((uint64_t)n_users - 1));
    for (size_t i = 0; i < n; i++) key[i] = (uint64_t)time[i] - (uint64_t)lo;
    radix_sort(idx, tmp, n, key, bit_length((uint64_t)hi - (uint64_t)lo));
    free(tmp);
    free(key);
    return idx;
}

typedef struct {
    uint32_t item, pos;
} item_pos_t;

static int cmp_item_pos(const void *a, const void *b) {
    const item_pos_t *x = a, *y = b;
    if (x->item != y->item) return x->item < y->item ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Mark duplicates (same item) inside one (time, user) group order[g0..g1), which holds rows
 * in their original order, so the first of each item is the one pandas keeps. */
static void mark_group_dups(const uint32_t *order, size_t g0, size_t g1, const uint32_t *irank,
                            unsigned char *dup) {
    size_t g = g1 - g0;
    if (g <= 16) {
        for (size_t a = g0 + 1; a < g1; a++)
            for (size_t b = g0; b < a; b++)
                if (!dup[b] && irank[order[a]] == irank[order[b]]) {
                    dup[a] = 1;
                    break;
                }
        return;
    }
    item_pos_t *ip = tmr_malloc(g * sizeof(item_pos_t));
    for (size_t k = 0; k < g; k++) ip[k] = (item_pos_t){irank[order[g0 + k]], (uint32_t)k};
    qsort(ip, g, sizeof *ip, cmp_item_pos);
    for (size_t k = 1; k < g; k++)
        if (ip[k].item == ip[k - 1].item) dup[g0 + ip[k].pos] = 1;
    free(ip);
}

/* Drop (user, item, time) duplicates from the sorted order in place; returns the kept count. */
static size_t drop_duplicates(uint32_t *order, size_t n, const int64_t *time, const uint32_t *urank,
                              const uint32_t *irank) {
    unsigned char *dup = NULL;
    size_t g0 = 0;
    while (g0 < n) {
        size_t g1 = g0 + 1;
        while (g1 < n && time[order[g1]] == time[order[g0]] && urank[order[g1]] == urank[order[g0]]) g1++;
        if (g1 - g0 > 1) {
            if (!dup) dup = tmr_calloc(n, 1);
            mark_group_dups(order, g0, g1, irank, dup);
        }
        g0 = g1;
    }
    if (!dup) return n;
    size_t kept = 0;
    for (size_t k = 0; k < n; k++)
        if (!dup[k]) order[kept++] = order[k];
    free(dup);
    return kept;
}

/* ------------------------------------------------------------------------------------------
 * Writing
 * ---------------------------------------------------------------------------------------- */

/* Decimal text two digits at a time ("00" .. "99"). */
static const char digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static char *put_u32(char *p, uint32_t v) {
    char tmp[12], *e = tmp + sizeof tmp, *s = e;
    while (v >= 100) {
        uint32_t r = v % 100;
        v /= 100;
        s -= 2;
        memcpy(s, digit_pairs + 2 * r, 2);
    }
    if (v >= 10) {
        s -= 2;
        memcpy(s, digit_pairs + 2 * v, 2);
    } else {
        *--s = (char)('0' + v);
    }
    while (s < e) *p++ = *s++; /* a short loop beats a memcpy call here */
    return p;
}

static char *put_u64(char *p, uint64_t v) {
    if (v <= UINT32_MAX) return put_u32(p, (uint32_t)v);
    char tmp[24], *e = tmp + sizeof tmp, *s = e;
    while (v > UINT32_MAX) {
        uint32_t r = (uint32_t)(v % 100);
        v /= 100;
        s -= 2;
        memcpy(s, digit_pairs + 2 * r, 2);
    }
    p = put_u32(p, (uint32_t)v);
    memcpy(p, s, (size_t)(e - s));
    return p + (e - s);
}

static char *put_i64(char *p, int64_t v) {
    if (v < 0) {
        *p++ = '-';
        return put_u64(p, 0 - (uint64_t)v);
    }
    return put_u64(p, (uint64_t)v);
}

/* The kept rows in sorted order, gathered once so the writers read them sequentially. */
typedef struct {
    size_t n;
    uint32_t *user;  /* (n) 0-based user rank */
    uint32_t *item;  /* (n) 0-based item rank */
    int64_t *time;   /* (n) original time */
} sorted_t;

static sorted_t gather_sorted(const uint32_t *order, size_t kept, const uint32_t *urank,
                              const uint32_t *irank, const int64_t *time) {
    sorted_t s = {kept, tmr_malloc(tmr_mul_size(kept, sizeof(uint32_t))),
                  tmr_malloc(tmr_mul_size(kept, sizeof(uint32_t))),
                  tmr_malloc(tmr_mul_size(kept, sizeof(int64_t)))};
    for (size_t k = 0; k < kept; k++) {
        uint32_t r = order[k];
        s.user[k] = urank[r];
        s.item[k] = irank[r];
        s.time[k] = time[r];
    }
    return s;
}

static void sorted_free(sorted_t *s) {
    free(s->user);
    free(s->item);
    free(s->time);
}

/* Everything the row formatters need. */
typedef struct {
    const sorted_t *s;        /* the kept rows, sorted */
    const uint32_t *rows;     /* (n_rows of this file) positions into s */
    const int64_t *user_off;  /* (n_users + 1) CSR into user_items */
    const uint32_t *user_items; /* (kept) every item rank of each user, duplicates possible */
    int64_t n_items;
    int n_neg;
    uint64_t seed;
    uint32_t epoch;           /* 0 test, 1 dev */
    uint64_t **bitmaps;       /* (threads) (n_items / 64 + 1) scratch, all zero between rows */
    int64_t fail_user;        /* 1-based user id whose negatives cannot be drawn, 0 if none */
} fmt_ctx_t;

/* A user holding nearly every item could need an endless stream: give up after 2^26 words. */
#define PREPARE_MAX_DRAWS (1u << 26)

char *prepare_put_row(char *p, uint32_t user, uint32_t item, int64_t time) {
    p = put_u32(p, user);
    *p++ = '\t';
    p = put_u32(p, item);
    *p++ = '\t';
    return put_i64(p, time);
}

char *prepare_put_negatives(char *p, const uint64_t *bits, int64_t distinct, int64_t n_items,
                            int n_neg, uint64_t seed, uint32_t epoch, int64_t k, int *fail) {
    *fail = 0;
    if (n_neg <= 0) return p;
    *p++ = '\t';
    *p++ = '[';
    uint32_t range = (uint32_t)n_items;
    for (int j = 0; j < n_neg && distinct < n_items; j++) {
        rng_stream_t s = rng_stream(seed, RNG_PREPARE_NEG, epoch, (uint64_t)k * (uint64_t)n_neg + (uint64_t)j, 0);
        uint32_t v;
        do v = rng_stream_below(&s, range);
        while ((bits[v >> 6] >> (v & 63)) & 1 && s.draw < PREPARE_MAX_DRAWS);
        if ((bits[v >> 6] >> (v & 63)) & 1) {
            distinct = n_items; /* report below */
            break;
        }
        if (j) *p++ = ',', *p++ = ' ';
        p = put_u32(p, v + 1);
    }
    *fail = distinct >= n_items;
    *p++ = ']';
    return p;
}

static char *fmt_train(fmt_ctx_t *c, int64_t k, char *p) {
    uint32_t r = c->rows[k];
    p = prepare_put_row(p, c->s->user[r] + 1, c->s->item[r] + 1, c->s->time[r]);
    *p++ = '\n';
    return p;
}

/* One dev/test row: the triple, then n_neg items (1-based) the user never touched. */
static char *fmt_eval(fmt_ctx_t *c, int64_t k, char *p) {
    uint32_t r = c->rows[k], u = c->s->user[r];
    uint64_t *bits = c->bitmaps[omp_get_thread_num()];
    const uint32_t *it = c->user_items + c->user_off[u];
    int64_t deg = c->user_off[u + 1] - c->user_off[u], distinct = 0;
    for (int64_t j = 0; j < deg; j++) {
        uint64_t m = 1ull << (it[j] & 63);
        distinct += !(bits[it[j] >> 6] & m);
        bits[it[j] >> 6] |= m;
    }
    p = prepare_put_row(p, u + 1, c->s->item[r] + 1, c->s->time[r]);
    int fail;
    p = prepare_put_negatives(p, bits, distinct, c->n_items, c->n_neg, c->seed, c->epoch, k, &fail);
    if (fail) {
#pragma omp atomic write
        c->fail_user = (int64_t)u + 1;
    }
    *p++ = '\n';
    for (int64_t j = 0; j < deg; j++) bits[it[j] >> 6] = 0;
    return p;
}

typedef char *(*fmt_fn)(fmt_ctx_t *c, int64_t k, char *p);

/* Header, then rows [0, n_rows) formatted in parallel batches (each chunk into its own buffer,
 * written in order). row_max bounds one row's text. Returns 0 or -1 (I/O or a failed row). */
static int write_rows(FILE *f, const char *header, int64_t n_rows, size_t row_max, fmt_fn fn,
                      fmt_ctx_t *c) {
    if (fputs(header, f) == EOF) return -1;
    int n_chunks = omp_get_max_threads();
    int64_t batch = (int64_t)((size_t)32 << 20) / (int64_t)row_max;
    if (batch < n_chunks) batch = n_chunks;
    int64_t per_chunk = (batch + n_chunks - 1) / n_chunks;
    char **buf = tmr_malloc((size_t)n_chunks * sizeof(char *));
    size_t *len = tmr_malloc((size_t)n_chunks * sizeof(size_t));
    for (int t = 0; t < n_chunks; t++) buf[t] = tmr_malloc(tmr_mul_size((size_t)per_chunk, row_max));
    int rc = 0;
    for (int64_t b0 = 0; b0 < n_rows && rc == 0; b0 += per_chunk * n_chunks) {
#pragma omp parallel for schedule(static, 1)
        for (int t = 0; t < n_chunks; t++) {
            int64_t r0 = b0 + t * per_chunk, r1 = r0 + per_chunk;
            if (r1 > n_rows) r1 = n_rows;
            char *p = buf[t];
            for (int64_t k = r0; k < r1; k++) p = fn(c, k, p);
            len[t] = (size_t)(p - buf[t]);
        }
        if (c->fail_user) rc = -1;
        for (int t = 0; t < n_chunks && rc == 0; t++)
            if (len[t] && fwrite(buf[t], 1, len[t], f) != len[t]) rc = -1;
    }
    for (int t = 0; t < n_chunks; t++) free(buf[t]);
    free(buf);
    free(len);
    return rc;
}

/* mkdir -p */
static int make_dirs(const char *path, char *err, size_t errlen) {
    if (!path[0]) return tmr_error(err, errlen, "empty output directory name");
    char *p = tmr_malloc(strlen(path) + 1);
    strcpy(p, path);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0') continue;
        char keep = *s;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            free(p);
            return tmr_error(err, errlen, "cannot create directory %s: %s", path, strerror(e));
        }
        *s = keep;
        if (!keep) break;
    }
    free(p);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return tmr_error(err, errlen, "%s is not a directory", path);
    return 0;
}

/* One output file written to a temp name in outdir; renamed by the caller. */
static int write_one(const char *tmp, const char *header, int64_t n_rows, size_t row_max, fmt_fn fn,
                     fmt_ctx_t *c, char *err, size_t errlen) {
    FILE *f = fopen(tmp, "wb");
    if (!f) return tmr_error(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    setvbuf(f, NULL, _IONBF, 0); /* write_rows hands over big blocks: skip stdio's copy */
    int rc = write_rows(f, header, n_rows, row_max, fn, c);
    int e = errno;
    if (fclose(f) != 0 && rc == 0) rc = -1, e = errno;
    if (rc == 0) return 0;
    if (c->fail_user)
        return tmr_error(err, errlen,
                         "user %" PRId64 " interacted with every item (or nearly): no negatives to draw",
                         c->fail_user);
    return tmr_error(err, errlen, "cannot write %s: %s", tmp, strerror(e));
}

/* ------------------------------------------------------------------------------------------
 * The recipe
 * ---------------------------------------------------------------------------------------- */

enum { ROLE_TRAIN = 0, ROLE_DEV = 1, ROLE_TEST = 2 };

/* Per sorted position: the user's first row stays in train, the last (if the user has two or
 * more) is test, the one before (three or more) dev. Appends positions to lists[role], in
 * sorted order, and counts them. */
static void split_roles(const sorted_t *s, int64_t n_users, uint32_t *lists[3], int64_t counts[3]) {
    size_t kept = s->n;
    uint32_t *count = tmr_calloc((size_t)n_users, sizeof(uint32_t));
    uint32_t *seen = tmr_calloc((size_t)n_users, sizeof(uint32_t));
    unsigned char *role = tmr_malloc(kept ? kept : 1);
    for (size_t k = 0; k < kept; k++) count[s->user[k]]++;
    for (size_t k = kept; k-- > 0;) {
        uint32_t u = s->user[k], later = seen[u]++; /* rows of u after this one */
        role[k] = (later == 0 && count[u] >= 2) ? ROLE_TEST : (later == 1 && count[u] >= 3) ? ROLE_DEV : ROLE_TRAIN;
    }
    counts[0] = counts[1] = counts[2] = 0;
    for (size_t k = 0; k < kept; k++) lists[role[k]][counts[role[k]]++] = (uint32_t)k;
    free(count);
    free(seen);
    free(role);
}

/* CSR of every user's item ranks over the kept rows. off: (n_users + 1), items: (kept). */
static void user_items_csr(const sorted_t *s, int64_t n_users, int64_t **off_out, uint32_t **items_out) {
    size_t kept = s->n;
    int64_t *off = tmr_calloc((size_t)n_users + 1, sizeof(int64_t));
    uint32_t *items = tmr_malloc(tmr_mul_size(kept ? kept : 1, sizeof(uint32_t)));
    for (size_t k = 0; k < kept; k++) off[s->user[k] + 1]++;
    for (int64_t u = 0; u < n_users; u++) off[u + 1] += off[u];
    int64_t *fill = tmr_malloc(((size_t)n_users + 1) * sizeof(int64_t));
    memcpy(fill, off, ((size_t)n_users + 1) * sizeof(int64_t));
    for (size_t k = 0; k < kept; k++) items[fill[s->user[k]]++] = s->item[k];
    free(fill);
    *off_out = off;
    *items_out = items;
}

static const char *const out_names[3] = {"train.csv", "test.csv", "dev.csv"};

const char *prepare_eval_header(int n_neg) {
    return n_neg > 0 ? "user_id\titem_id\ttime\tneg_items\n" : "user_id\titem_id\ttime\n";
}

int prepare_write_stats(const interactions_t *x, const char *outdir, int n_neg, uint64_t seed,
                        prepare_stats_t *stats, char *err, size_t errlen) {
    if (x->n <= 0) return tmr_error(err, errlen, "no interactions to prepare");
    if ((uint64_t)x->n >= UINT32_MAX) return tmr_error(err, errlen, "too many interactions (%" PRId64 ")", x->n);
    if (n_neg < 0) return tmr_error(err, errlen, "negative --neg_items %d", n_neg);
    if (make_dirs(outdir, err, errlen) != 0) return -1;
    size_t n = (size_t)x->n;
    int64_t n_users, n_items;
    uint32_t *urank = rank_values(x->user, n, &n_users);
    uint32_t *irank = rank_values(x->item, n, &n_items);
    uint32_t *order = sort_rows(x->time, urank, n, n_users);
    size_t kept = drop_duplicates(order, n, x->time, urank, irank);
    sorted_t srt = gather_sorted(order, kept, urank, irank, x->time);
    free(order);
    free(urank);
    free(irank);

    uint32_t *lists[3]; /* positions of the train (<= kept), dev and test (<= n_users) rows */
    for (int k = 0; k < 3; k++)
        lists[k] = tmr_malloc(tmr_mul_size(k == ROLE_TRAIN ? kept : (size_t)n_users, sizeof(uint32_t)));
    int64_t counts[3];
    split_roles(&srt, n_users, lists, counts);
    int64_t *user_off;
    uint32_t *user_items;
    user_items_csr(&srt, n_users, &user_off, &user_items);
    fmt_ctx_t c = {.s = &srt, .user_off = user_off,
                   .user_items = user_items, .n_items = n_items, .n_neg = n_neg, .seed = seed};
    int nt = omp_get_max_threads();
    c.bitmaps = tmr_malloc((size_t)nt * sizeof(uint64_t *));
    for (int t = 0; t < nt; t++) c.bitmaps[t] = tmr_calloc((size_t)n_items / 64 + 1, sizeof(uint64_t));

    /* train, test (epoch 0), dev (epoch 1): temp names first, renamed only when all succeeded. */
    char *tmp[3], *dst[3];
    size_t cap = strlen(outdir) + 64;
    int rc;
    for (int k = 0; k < 3; k++) {
        dst[k] = tmr_malloc(cap), tmp[k] = tmr_malloc(cap);
        snprintf(dst[k], cap, "%s/%s", outdir, out_names[k]);
        snprintf(tmp[k], cap, "%s/.%s.tmp%ld", outdir, out_names[k], (long)getpid());
    }
    size_t eval_max = 80 + 12 * (size_t)n_neg;
    const char *eval_header = prepare_eval_header(n_neg);
    c.rows = lists[ROLE_TRAIN];
    rc = write_one(tmp[0], "user_id\titem_id\ttime\n", counts[ROLE_TRAIN], 72, fmt_train, &c, err, errlen);
    if (rc == 0) {
        c.rows = lists[ROLE_TEST], c.epoch = 0;
        rc = write_one(tmp[1], eval_header, counts[ROLE_TEST], eval_max, fmt_eval, &c, err, errlen);
    }
    if (rc == 0) {
        c.rows = lists[ROLE_DEV], c.epoch = 1;
        rc = write_one(tmp[2], eval_header, counts[ROLE_DEV], eval_max, fmt_eval, &c, err, errlen);
    }
    for (int k = 0; k < 3 && rc == 0; k++)
        if (rename(tmp[k], dst[k]) != 0) rc = tmr_error(err, errlen, "cannot rename %s to %s: %s", tmp[k], dst[k], strerror(errno));
    if (rc != 0)
        for (int k = 0; k < 3; k++) unlink(tmp[k]); /* whatever is left of them */

    if (stats) {
        stats->n_users = n_users;
        stats->n_items = n_items;
        stats->n_rows = (int64_t)kept;
        stats->n_duplicates = (int64_t)(n - kept);
        stats->n_train = counts[ROLE_TRAIN];
        stats->n_dev = counts[ROLE_DEV];
        stats->n_test = counts[ROLE_TEST];
    }
    for (int k = 0; k < 3; k++) free(dst[k]), free(tmp[k]);
    for (int t = 0; t < nt; t++) free(c.bitmaps[t]);
    free(c.bitmaps);
    free(user_off);
    free(user_items);
    for (int k = 0; k < 3; k++) free(lists[k]);
    sorted_free(&srt);
    return rc;
}

int prepare_write(const interactions_t *x, const char *outdir, int n_neg, uint64_t seed, char *err,
                  size_t errlen) {
    return prepare_write_stats(x, outdir, n_neg, seed, NULL, err, errlen);
}

/* ------------------------------------------------------------------------------------------
 * timirec prepare
 * ---------------------------------------------------------------------------------------- */

static const char *prepare_usage =
    "usage: timirec prepare --format {movielens,udata,csv,seq} INPUT OUTDIR [--neg_items N] [--seed N]\n"
    "\n"
    "Turn a raw interaction log into OUTDIR/{train,dev,test}.csv by the reference recipe:\n"
    "drop duplicate (user, item, time) rows, sort stably by (time, user), renumber users and\n"
    "items from 1, per user first row -> train, last -> test, the one before -> dev; each\n"
    "dev/test row gets --neg_items negatives the user never interacted with (0: no neg_items\n"
    "column; evaluate such data with --test_all 1).\n"
    "Formats: udata = MovieLens 100K u.data (user item rating time, tab separated);\n"
    "movielens = MovieLens 1M/10M ratings.dat (user::item::rating::time);\n"
    "csv = header naming user_id, item_id, time (tab or comma separated, other columns ignored);\n"
    "seq = one line per user 'user item item ...', time = the running index over the file.";

static int known_format(const char *f) {
    return !strcmp(f, "movielens") || !strcmp(f, "udata") || !strcmp(f, "csv") || !strcmp(f, "seq");
}

int prepare_main(int argc, char **argv) {
    const char *format = NULL;
    int64_t neg_items = 1000, seed = 0;
    const opt_t opts[] = {
        {"format", OPT_STR, &format, 0, 0, "input format: movielens, udata, csv or seq (required)"},
        {"neg_items", OPT_INT, &neg_items, 0, 1e6, "negatives per dev/test row"},
        {"seed", OPT_INT, &seed, 0, 1e15, "seed of the negatives (Philox, RNG_PREPARE_NEG)"},
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    const char *pos[2];
    int n_pos = 0;
    char err[1024];
    int rc = options_parse(opts, n_opts, argc, argv, 1, pos, 2, &n_pos, err, sizeof err);
    if (rc == 1) {
        options_usage(prepare_usage, opts, n_opts, stdout);
        return 0;
    }
    if (rc == 0 && (!format || n_pos != 2))
        rc = tmr_error(err, sizeof err, "%s", !format ? "--format is required" : "need INPUT and OUTDIR");
    if (rc == 0 && !known_format(format))
        rc = tmr_error(err, sizeof err, "unknown --format '%s' (want movielens, udata, csv or seq)", format);
    if (rc != 0) {
        fprintf(stderr, "timirec prepare: %s\n(see timirec prepare --help)\n", err);
        return 2;
    }
    double t0 = tmr_now();
    interactions_t x;
    if (interactions_read(pos[0], format, &x, err, sizeof err) != 0) {
        fprintf(stderr, "timirec: error: %s\n", err);
        return 1;
    }
    prepare_stats_t st;
    rc = prepare_write_stats(&x, pos[1], (int)neg_items, (uint64_t)seed, &st, err, sizeof err);
    interactions_free(&x);
    if (rc != 0) {
        fprintf(stderr, "timirec: error: %s\n", err);
        return 1;
    }
    printf("prepare: %s -> %s: %" PRId64 " users, %" PRId64 " items, %" PRId64
           " interactions (%" PRId64 " duplicates dropped); train %" PRId64 ", dev %" PRId64
           ", test %" PRId64 " rows; %.2f s\n",
           pos[0], pos[1], st.n_users, st.n_items, st.n_rows, st.n_duplicates, st.n_train, st.n_dev,
           st.n_test, tmr_now() - t0);
    return 0;
}
