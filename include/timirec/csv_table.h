/* CSV tables: RFC 4180 fields ("a,b" and "say ""hi""" quoted), and a table of string cells
 * under a header line that is read back (its header must match) and saved whole, on disk before
 * it replaces the old file (temporary file, fsync, rename): a reader finds the old table or the
 * new one, never half of one. timirec sweep keeps its sweep.csv in one. */
#ifndef TIMIREC_CSV_TABLE_H
#define TIMIREC_CSV_TABLE_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CSV_TABLE_MAX_COLS 192

/* One CSV line (no newline) into fields: returns the number of fields (at most max_fields; the
 * rest are dropped), each a malloc'd string. Text after a closing quote is kept. */
int csv_split(const char *line, char **fields, int max_fields);
/* A field as CSV writes it: quoted when it holds ',', '"', or a line break. */
void csv_write_field(FILE *f, const char *s);

typedef struct {
    int n_cols;
    char *col[CSV_TABLE_MAX_COLS];  /* the header: column names */
    int n_rows, cap_rows;
    char ***row;                    /* row[i][c]: n_cols malloc'd strings */
} csv_table_t;

/* Add a column to a table without rows (t zeroed first); returns its index. Fatal past
 * CSV_TABLE_MAX_COLS. */
int csv_table_add_col(csv_table_t *t, const char *name);
/* The index of a column, or -1. */
int csv_table_col(const csv_table_t *t, const char *name);
/* Append a row (n_cols malloc'd strings), taking ownership of it. */
void csv_table_append(csv_table_t *t, char **row);
/* Replace row i, taking ownership of the new one and freeing the old. */
void csv_table_replace(csv_table_t *t, int i, char **row);
void csv_table_free(csv_table_t *t);

/* Append the rows of the CSV file at path to t, whose columns must be the file's header (blank
 * lines are skipped). 0, also when there is no file; -2 when the file has another header; -1
 * with a message (a row with another number of fields, an unreadable or empty file). */
int csv_table_load(csv_table_t *t, const char *path, char *err, size_t errlen);
/* Write header and rows to path (through path.tmp, synced, then renamed). 0 or -1. */
int csv_table_save(const csv_table_t *t, const char *path, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
