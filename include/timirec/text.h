/* Text scanning shared by the input readers (corpus.c: the dataset, prepare.c: raw logs).
 *
 * A file is read whole into a NUL-terminated buffer, cut into lines and fields as spans that
 * point into it (no copies), and numbers are parsed from spans by hand. Input errors name the
 * file and the line, compiler style:
 *   data/ml/train.csv:17: item_id "abc" is not an integer id
 *   data/ml/train.csv: cannot open: No such file or directory     (no line applies)
 * Field splitting stays with each reader: the formats differ (quoted CSV vs blanks / "::"). */
#ifndef TIMIREC_TEXT_H
#define TIMIREC_TEXT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* n bytes at s, not NUL-terminated: a line or a field inside a buffer. */
typedef struct {
    const char *s;
    size_t n;
} text_span_t;

/* Whole file into *buf (malloc'd, NUL-terminated at (*buf)[*len]; the file itself may hold NUL
 * bytes). Reads in a loop, so pipes and /dev/stdin work too. Returns 0, or -1 with
 * "path: cannot open: <strerror>" / "path: cannot read: <strerror>" (*buf untouched). */
int text_read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen);

/* The next line of [*p, end) without its "\n" or "\r\n"; advances *p past the newline.
 * Returns 0 when *p reached end: "a\nb" and "a\nb\n" both give two lines, "" gives none,
 * "\n\n" two empty ones. Inline: the readers call it once per line of 100 MB files. */
static inline int text_next_line(const char **p, const char *end, text_span_t *line) {
    if (*p >= end) return 0;
    const char *s = *p;
    const char *nl = (const char *)memchr(s, '\n', (size_t)(end - s));
    const char *e = nl ? nl : end;
    *p = nl ? nl + 1 : end;
    if (e > s && e[-1] == '\r') e--;
    line->s = s;
    line->n = (size_t)(e - s);
    return 1;
}

/* 1 if the span is empty or only spaces and tabs. */
static inline int text_is_blank(text_span_t f) {
    for (size_t i = 0; i < f.n; i++)
        if (f.s[i] != ' ' && f.s[i] != '\t') return 0;
    return 1;
}

/* The span without leading and trailing spaces and tabs. */
static inline text_span_t text_trim(text_span_t f) {
    while (f.n && (f.s[0] == ' ' || f.s[0] == '\t')) f.s++, f.n--;
    while (f.n && (f.s[f.n - 1] == ' ' || f.s[f.n - 1] == '\t')) f.n--;
    return f;
}

/* 1 if the span is exactly the C string s. */
static inline int text_eq(text_span_t f, const char *s) {
    size_t n = strlen(s);
    return f.n == n && memcmp(f.s, s, n) == 0;
}

/* A decimal integer filling the whole span: optional '+'/'-', then digits only (no blanks:
 * trim first). Returns 0 (*out set), 1 not a number ("", "-", "1.5", " 7"), 2 outside
 * [INT64_MIN, INT64_MAX] (*out untouched unless 0). */
int text_parse_i64(text_span_t f, int64_t *out);

/* The span in double quotes for a message, cut to 40 bytes plus "..." : "abc", "1234...".
 * Writes into out (64 bytes is enough) and returns it. */
const char *text_quote(text_span_t f, char *out, size_t outlen);

/* "path:LINE: message" into err (line >= 1), or "path: message" when line <= 0 (no line
 * applies: cannot open, empty file). err may be NULL. Returns -1, like tmr_error. */
#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
int text_line_error(char *err, size_t errlen, const char *path, int64_t line, const char *fmt, ...);

#ifdef __cplusplus
}
#endif
#endif
