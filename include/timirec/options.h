/* Table-driven command-line options: one table per command drives parsing, --help and the
 * printed argument table, so they cannot disagree. */
#ifndef TIMIREC_OPTIONS_H
#define TIMIREC_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { OPT_INT, OPT_FLOAT, OPT_STR } opt_kind_t;

typedef struct {
    const char *name;   /* without the leading "--" */
    opt_kind_t kind;
    void *value;        /* int64_t*, double* or const char** holding the default */
    double min, max;    /* accepted range for numbers (inclusive) */
    const char *help;
} opt_t;

/* Parse argv[first ..]: "--name value" or "--name=value". Arguments not starting with "--"
 * go to positional[] (at most max_positional; *n_positional receives the count).
 * Returns 0, 1 when --help was given (usage printed), or -1 with a message in err naming the
 * flag and the accepted range. */
int options_parse(const opt_t *table, int n_opts, int argc, char **argv, int first,
                  const char **positional, int max_positional, int *n_positional,
                  char *err, size_t errlen);

/* Read option values from a config file: one "name = value" per line (a leading "--" on the
 * name is allowed), '#' or ';' comments, blank lines and "[section]" headers ignored. Values
 * are checked as on the command line; errors read "FILE:LINE: ...". The file's text is kept
 * for the life of the process (string options point into it). Returns 0 or -1. */
int options_load_file(const opt_t *table, int n_opts, const char *path, char *err,
                      size_t errlen);

/* Free the texts of every config file read so far (string options read from them then
 * dangle): for programs that parse many times (the fuzz harness). */
void options_free_files(void);

/* Usage text: "usage" line, then one line per option with its default and help. */
void options_usage(const char *usage, const opt_t *table, int n_opts, FILE *out);

/* The argument table as the run logs it: name and current value, one per line. */
void options_print(const opt_t *table, int n_opts, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
