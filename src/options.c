#include "timirec/options.h"

#include "timirec/common.h"
#include "timirec/text.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const opt_t *find(const opt_t *table, int n, const char *name, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(table[i].name) == len && memcmp(table[i].name, name, len) == 0) return &table[i];
    return NULL;
}

static int set_value(const opt_t *o, const char *text, char *err, size_t errlen) {
    char *end;
    errno = 0;
    if (o->kind == OPT_STR) {
        *(const char **)o->value = text;
        return 0;
    }
    if (o->kind == OPT_INT) {
        long long v = strtoll(text, &end, 10);
        if (errno || end == text || *end)
            return tmr_error(err, errlen, "--%s: \"%s\" is not an integer", o->name, text);
        if ((double)v < o->min || (double)v > o->max)
            return tmr_error(err, errlen, "--%s: %lld is outside the accepted range [%.0f, %.0f]",
                             o->name, v, o->min, o->max);
        *(int64_t *)o->value = v;
        return 0;
    }
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v))
        return tmr_error(err, errlen, "--%s: \"%s\" is not a number", o->name, text);
    if (v < o->min || v > o->max)
        return tmr_error(err, errlen, "--%s: %g is outside the accepted range [%g, %g]", o->name,
                         v, o->min, o->max);
    *(double *)o->value = v;
    return 0;
}

int options_parse(const opt_t *table, int n_opts, int argc, char **argv, int first,
                  const char **positional, int max_positional, int *n_positional,
                  char *err, size_t errlen) {
    int np = 0;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
        if (strncmp(a, "--", 2) != 0) {
            if (np >= max_positional)
                return tmr_error(err, errlen, "unexpected argument \"%s\"", a);
            positional[np++] = a;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const opt_t *o = find(table, n_opts, name, len);
        if (!o) return tmr_error(err, errlen, "unknown flag --%.*s (see --help)", (int)len, name);
        const char *text = eq ? eq + 1 : NULL;
        if (!text) {
            if (i + 1 >= argc) return tmr_error(err, errlen, "--%s needs a value", o->name);
            text = argv[++i];
        }
        if (set_value(o, text, err, errlen)) return -1;
    }
    if (n_positional) *n_positional = np;
    return 0;
}

/* Texts of the config files read so far: string options point into them, so they stay until
 * options_free_files (a list, so that they are reachable, not leaked). */
typedef struct kept_file {
    struct kept_file *next;
    char *text;
} kept_file_t;
static kept_file_t *g_kept;

void options_free_files(void) {
    while (g_kept) {
        kept_file_t *k = g_kept;
        g_kept = k->next;
        free(k->text);
        free(k);
    }
}

static int load_file(const opt_t *table, int n_opts, const char *path, char *buf, size_t len,
                     char *err, size_t errlen) {
    const char *p = buf, *end = buf + len;
    text_span_t line;
    int64_t line_no = 0;
    char msg[512];
    while (text_next_line(&p, end, &line)) {
        line_no++;
        text_span_t l = text_trim(line);
        if (l.n == 0 || l.s[0] == '#' || l.s[0] == ';' || l.s[0] == '[') continue;
        const char *eq = memchr(l.s, '=', l.n);
        if (!eq)
            return text_line_error(err, errlen, path, line_no, "expected \"name = value\", got %s",
                                   text_quote(l, msg, sizeof msg));
        text_span_t name = text_trim((text_span_t){l.s, (size_t)(eq - l.s)});
        text_span_t value = text_trim((text_span_t){eq + 1, (size_t)(l.s + l.n - eq - 1)});
        if (name.n >= 2 && name.s[0] == '-' && name.s[1] == '-') name.s += 2, name.n -= 2;
        const opt_t *o = find(table, n_opts, name.s, name.n);
        if (!o)
            return text_line_error(err, errlen, path, line_no, "unknown option %s",
                                   text_quote(name, msg, sizeof msg));
        /* NUL-terminate the value in place (the buffer is ours). */
        char *v = (char *)value.s;
        v[value.n] = '\0';
        if (set_value(o, v, msg, sizeof msg))
            return text_line_error(err, errlen, path, line_no, "%s", msg);
    }
    return 0;
}

int options_load_file(const opt_t *table, int n_opts, const char *path, char *err,
                      size_t errlen) {
    char *buf;
    size_t len;
    if (text_read_file(path, &buf, &len, err, errlen)) return -1;
    kept_file_t *k = tmr_malloc(sizeof *k);
    *k = (kept_file_t){g_kept, buf};
    g_kept = k;
    return load_file(table, n_opts, path, buf, len, err, errlen);
}

static void print_value(const opt_t *o, FILE *out) {
    if (o->kind == OPT_INT) fprintf(out, "%lld", (long long)*(int64_t *)o->value);
    else if (o->kind == OPT_FLOAT) fprintf(out, "%g", *(double *)o->value);
    else {
        const char *s = *(const char **)o->value;
        fprintf(out, "%s", s ? s : "");
    }
}

void options_usage(const char *usage, const opt_t *table, int n_opts, FILE *out) {
    fprintf(out, "%s\n\noptions (default in brackets):\n", usage);
    for (int i = 0; i < n_opts; i++) {
        const opt_t *o = &table[i];
        fprintf(out, "  --%-16s %s [", o->name, o->help);
        print_value(o, out);
        fprintf(out, "]");
        if (o->kind != OPT_STR) fprintf(out, " range %g..%g", o->min, o->max);
        fputc('\n', out);
    }
    fprintf(out, "  --%-16s this text\n", "help");
}

void options_print(const opt_t *table, int n_opts, FILE *out) {
    for (int i = 0; i < n_opts; i++) {
        fprintf(out, "  %-16s ", table[i].name);
        print_value(&table[i], out);
        fputc('\n', out);
    }
}
