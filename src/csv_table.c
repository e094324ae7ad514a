/* CSV tables (include/timirec/csv_table.h). */
#include "timirec/csv_table.h"

#include "timirec/common.h"
#include "timirec/text.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int csv_split(const char *line, char **fields, int max_fields) {
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

void csv_write_field(FILE *f, const char *s) {
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

int csv_table_add_col(csv_table_t *t, const char *name) {
    if (t->n_cols == CSV_TABLE_MAX_COLS)
        tmr_fatal("csv table: more than %d columns (at %s)", CSV_TABLE_MAX_COLS, name);
    t->col[t->n_cols] = tmr_strndup(name, strlen(name));
    return t->n_cols++;
}

int csv_table_col(const csv_table_t *t, const char *name) {
    for (int c = 0; c < t->n_cols; c++)
        if (strcmp(t->col[c], name) == 0) return c;
    return -1;
}

static void free_row(char **row, int n) {
    for (int c = 0; c < n; c++) free(row[c]);
    free(row);
}

void csv_table_append(csv_table_t *t, char **row) {
    if (t->n_rows == t->cap_rows) {
        t->cap_rows = t->cap_rows ? 2 * t->cap_rows : 64;
        t->row = tmr_realloc(t->row, (size_t)t->cap_rows * sizeof *t->row);
    }
    t->row[t->n_rows++] = row;
}

void csv_table_replace(csv_table_t *t, int i, char **row) {
    free_row(t->row[i], t->n_cols);
    t->row[i] = row;
}

void csv_table_free(csv_table_t *t) {
    for (int i = 0; i < t->n_rows; i++) free_row(t->row[i], t->n_cols);
    free(t->row);
    for (int c = 0; c < t->n_cols; c++) free(t->col[c]);
    memset(t, 0, sizeof *t);
}

int csv_table_load(csv_table_t *t, const char *path, char *err, size_t errlen) {
    if (access(path, F_OK) != 0) return 0;
    char *buf;
    size_t len;
    if (text_read_file(path, &buf, &len, err, errlen)) return -1;
    const char *p = buf, *end = buf + len;
    text_span_t line;
    int line_no = 0, rc = 0;
    while (rc == 0 && text_next_line(&p, end, &line)) {
        line_no++;
        if (text_is_blank(line)) continue;
        char *l = tmr_strndup(line.s, line.n);
        char **f = tmr_malloc(CSV_TABLE_MAX_COLS * sizeof *f);
        int n = csv_split(l, f, CSV_TABLE_MAX_COLS);
        free(l);
        int bad = n != t->n_cols;
        if (line_no == 1) {
            for (int c = 0; !bad && c < n; c++) bad = strcmp(f[c], t->col[c]) != 0;
            free_row(f, n);
            if (bad) {
                tmr_error(err, errlen, "%s has other columns than expected", path);
                rc = -2;
            }
        } else if (bad) {
            free_row(f, n);
            rc = tmr_error(err, errlen, "%s:%d: %d fields, expected %d", path, line_no, n, t->n_cols);
        } else {
            csv_table_append(t, f);
        }
    }
    free(buf);
    return rc;
}

/* One line: the fields, comma-separated. */
static void write_line(FILE *f, char *const *fields, int n) {
    for (int c = 0; c < n; c++) {
        if (c) fputc(',', f);
        csv_write_field(f, fields[c]);
    }
    fputc('\n', f);
}

int csv_table_save(const csv_table_t *t, const char *path, char *err, size_t errlen) {
    char *tmp = tmr_strf("%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int rc = 0;
    if (!f) {
        rc = tmr_error(err, errlen, "%s: cannot write: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    write_line(f, t->col, t->n_cols);
    for (int i = 0; i < t->n_rows; i++) write_line(f, t->row[i], t->n_cols);
    /* On disk before the rename: an interrupted writer leaves the old table or the new one. */
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        rc = tmr_error(err, errlen, "%s: write failed: %s", tmp, strerror(errno));
    if (fclose(f) != 0 && rc == 0) rc = tmr_error(err, errlen, "%s: write failed", tmp);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = tmr_error(err, errlen, "%s: cannot write: %s", path, strerror(errno));
    free(tmp);
    return rc;
}
