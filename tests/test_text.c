/* text.h, the scanning both input readers share: lines (LF, CRLF, no final newline, empty
 * lines), trim / is_blank against a brute-force model, text_parse_i64 at the int64 edges and
 * against a regex-and-strtoll oracle on random strings, text_read_file (missing file,
 * directory, NUL bytes, a pipe larger than the first buffer) and the "path:LINE: msg" format. */
#include "test_util.h"
#include "data_util.h"
#include "timirec/rng.h"
#include "timirec/text.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static uint32_t draw(uint32_t seed, uint32_t epoch, uint64_t index, uint32_t n) {
    return rng_u32(seed, RNG_TEST, epoch, index, 0) % n;
}

static text_span_t span_of(const char *s) { return (text_span_t){s, strlen(s)}; }

static int span_is(text_span_t f, const char *s) { return f.n == strlen(s) && !memcmp(f.s, s, f.n); }

/* ---- lines ------------------------------------------------------------------------------ */

/* Scan the C string buf and compare with the expected lines; every span must point into buf. */
static void expect_lines(const char *buf, const char *const *want, int n_want, const char *label) {
    const char *p = buf, *end = buf + strlen(buf);
    text_span_t line = {NULL, 0};
    int n = 0;
    while (text_next_line(&p, end, &line)) {
        CHECK(line.s >= buf && line.s + line.n <= end, "%s: line %d outside the buffer", label, n);
        if (n < n_want)
            CHECK(span_is(line, want[n]), "%s: line %d is '%.*s', want '%s'", label, n,
                  (int)line.n, line.s, want[n]);
        n++;
    }
    CHECK(n == n_want, "%s: %d lines, want %d", label, n, n_want);
    CHECK(p == end, "%s: cursor stops %td bytes before the end", label, end - p);
    CHECK(!text_next_line(&p, end, &line), "%s: a line after the end", label);
}

static void test_lines_fixed(void) {
    const char *two[] = {"a", "bc"};
    expect_lines("a\nbc", two, 2, "LF, no final newline");
    expect_lines("a\nbc\n", two, 2, "LF");
    expect_lines("a\r\nbc\r\n", two, 2, "CRLF");
    expect_lines("a\r\nbc", two, 2, "CRLF, no final newline");
    expect_lines("a\nbc\r\n", two, 2, "mixed");
    expect_lines("", NULL, 0, "empty buffer");
    const char *empties[] = {"", "", "x", ""};
    expect_lines("\n\r\nx\n\n", empties, 4, "empty lines");
    const char *inner[] = {"x\ry", " \t "};
    expect_lines("x\ry\n \t \r\n", inner, 2, "CR inside a line, blanks kept");
    /* A NUL byte is an ordinary byte of a line (compared by hand: span_is stops at it). */
    const char *p = "a\0b\r\nc", *end = p + 6;
    text_span_t l = {NULL, 0};
    CHECK(text_next_line(&p, end, &l) && l.n == 3 && memcmp(l.s, "a\0b", 3) == 0,
          "NUL line: %zu bytes, want 3", l.n);
    CHECK(text_next_line(&p, end, &l) && span_is(l, "c") && !text_next_line(&p, end, &l),
          "line after the NUL line");
}

/* Random lines (some empty, some blank, some with '\r' inside) joined by LF or CRLF, with or
 * without a final newline; scanning must give them back. */
static void test_lines_random(uint32_t seed) {
    enum { MAX_LINES = 40, MAX_LEN = 12 };
    static const char alphabet[] = "ab \t\r,:1";
    char lines[MAX_LINES][MAX_LEN + 1];
    const char *want[MAX_LINES];
    char buf[MAX_LINES * (MAX_LEN + 2) + 1];
    int n_lines = (int)draw(seed, 1, 0, MAX_LINES + 1);
    int final_nl = (int)draw(seed, 1, 1, 2);
    size_t len = 0;
    for (int i = 0; i < n_lines; i++) {
        int n = (int)draw(seed, 2, (uint64_t)i, MAX_LEN + 1);
        for (int k = 0; k < n; k++)
            lines[i][k] = alphabet[draw(seed, 3, (uint64_t)i * 64 + (uint64_t)k, sizeof alphabet - 1)];
        /* A '\r' that ends a line would be read as part of CRLF: not the line's content. */
        while (n > 0 && lines[i][n - 1] == '\r') n--;
        /* Without a final newline an empty last line does not exist: give it a byte. */
        if (i == n_lines - 1 && !final_nl && n == 0) lines[i][n++] = 'z';
        lines[i][n] = '\0';
        want[i] = lines[i];
        memcpy(buf + len, lines[i], (size_t)n);
        len += (size_t)n;
        if (i < n_lines - 1 || final_nl) {
            if (draw(seed, 4, (uint64_t)i, 2)) buf[len++] = '\r';
            buf[len++] = '\n';
        }
    }
    buf[len] = '\0';
    char label[64];
    snprintf(label, sizeof label, "random lines, seed %u", seed);
    expect_lines(buf, want, n_lines, label);
}

/* ---- trim and is_blank ------------------------------------------------------------------ */

static int blank_char(char c) { return c == ' ' || c == '\t'; }

static void test_trim_blank(uint32_t seed) {
    static const char alphabet[] = "  \t\tx\n\r";
    char s[24];
    size_t n = draw(seed, 10, 0, sizeof s);
    for (size_t k = 0; k < n; k++) s[k] = alphabet[draw(seed, 11, k, sizeof alphabet - 1)];
    text_span_t f = {s, n};
    /* Model: first and one past the last non-blank byte. */
    size_t a = 0, b = n;
    while (a < n && blank_char(s[a])) a++;
    while (b > a && blank_char(s[b - 1])) b--;
    text_span_t t = text_trim(f);
    CHECK(t.s == s + a && t.n == b - a, "seed %u: trim of '%.*s' is [%td, +%zu), want [%zu, %zu)",
          seed, (int)n, s, t.s - s, t.n, a, b);
    CHECK(text_is_blank(f) == (a == b), "seed %u: is_blank('%.*s') = %d", seed, (int)n, s,
          text_is_blank(f));
}

static void test_trim_fixed(void) {
    CHECK(span_is(text_trim(span_of(" \t 7 \t")), "7"), "trim ' \\t 7 \\t'");
    CHECK(span_is(text_trim(span_of("a b")), "a b"), "trim keeps inner blanks");
    CHECK(text_trim(span_of(" \t ")).n == 0, "trim of blanks is empty");
    CHECK(text_trim(span_of("")).n == 0, "trim of empty");
    CHECK(span_is(text_trim(span_of("\rx\n")), "\rx\n"), "trim leaves CR/LF (not blanks)");
    CHECK(text_is_blank(span_of("")), "empty is blank");
    CHECK(text_is_blank(span_of(" \t")), "' \\t' is blank");
    CHECK(!text_is_blank(span_of(" \t.")), "' \\t.' is not blank");
    CHECK(!text_is_blank(span_of("\r")), "'\\r' is not blank");
    CHECK(text_eq(span_of("user_id"), "user_id"), "text_eq equal");
    CHECK(!text_eq(span_of("user_i"), "user_id"), "text_eq prefix");
    CHECK(!text_eq(span_of("user_idx"), "user_id"), "text_eq longer");
    CHECK(text_eq((text_span_t){"abc", 0}, ""), "text_eq empty");
}

/* ---- parse_i64 -------------------------------------------------------------------------- */

static void expect_i64(const char *text, int want_rc, int64_t want) {
    int64_t v = 0x5eed5eed;
    int rc = text_parse_i64(span_of(text), &v);
    CHECK(rc == want_rc, "parse '%s': rc %d, want %d", text, rc, want_rc);
    if (want_rc == 0)
        CHECK(v == want, "parse '%s' = %" PRId64 ", want %" PRId64, text, v, want);
    else
        CHECK(v == 0x5eed5eed, "parse '%s' failed but wrote %" PRId64, text, v);
}

static void test_parse_fixed(void) {
    expect_i64("0", 0, 0);
    expect_i64("-0", 0, 0);
    expect_i64("+5", 0, 5);
    expect_i64("-17", 0, -17);
    expect_i64("007", 0, 7);
    expect_i64("9223372036854775807", 0, INT64_MAX);
    expect_i64("+9223372036854775807", 0, INT64_MAX);
    expect_i64("-9223372036854775807", 0, -INT64_MAX);
    expect_i64("-9223372036854775808", 0, INT64_MIN);
    expect_i64("-0009223372036854775808", 0, INT64_MIN);
    expect_i64("9223372036854775808", 2, 0);   /* INT64_MAX + 1 */
    expect_i64("-9223372036854775809", 2, 0);  /* INT64_MIN - 1 */
    expect_i64("18446744073709551616", 2, 0);  /* 2^64: would wrap to 0 in uint64 */
    expect_i64("99999999999999999999999", 2, 0);
    expect_i64("99999999999999999999x", 1, 0); /* not a number wins over out of range */
    expect_i64("", 1, 0);
    expect_i64("-", 1, 0);
    expect_i64("+", 1, 0);
    expect_i64("--5", 1, 0);
    expect_i64("+-5", 1, 0);
    expect_i64("1.5", 1, 0);
    expect_i64("1e3", 1, 0);
    expect_i64("0x10", 1, 0);
    expect_i64(" 7 ", 1, 0); /* blanks are the caller's: trim first */
    expect_i64("7 ", 1, 0);
    expect_i64("\t7", 1, 0);
    expect_i64("5-", 1, 0);
    int64_t v = 0;
    CHECK(text_parse_i64(text_trim(span_of(" 7 ")), &v) == 0 && v == 7, "trim then parse ' 7 '");
    /* The span's length counts, not a NUL: "123" cut to 2 bytes is 12. */
    CHECK(text_parse_i64((text_span_t){"123", 2}, &v) == 0 && v == 12, "span length respected");
}

/* Oracle: ^[+-]?[0-9]+$ decides "a number"; strtoll with ERANGE decides the range. */
static int oracle_i64(const char *s, int64_t *out) {
    const char *p = s + (*s == '+' || *s == '-');
    if (!*p) return 1;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9') return 1;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE) return 2;
    *out = (int64_t)v;
    return 0;
}

static void test_parse_random(uint32_t seed) {
    char s[48];
    uint32_t kind = draw(seed, 20, 0, 4);
    if (kind == 0) { /* any int64, maybe with a '+' or leading zeros */
        uint64_t u = (uint64_t)rng_u32(seed, RNG_TEST, 21, 0, 0) << 32 | rng_u32(seed, RNG_TEST, 21, 0, 1);
        uint64_t mag = u >> (1 + draw(seed, 22, 0, 63)); /* every magnitude up to INT64_MAX */
        uint32_t sign = draw(seed, 23, 0, 3);           /* none, '+', '-' */
        const char *zeros = draw(seed, 25, 0, 3) == 0 ? "000" : "";
        snprintf(s, sizeof s, "%s%s%" PRIu64, sign == 0 ? "" : sign == 1 ? "+" : "-", zeros, mag);
    } else if (kind == 1) { /* near the edges: INT64_MAX/INT64_MIN plus or minus up to 20 */
        int d = (int)draw(seed, 26, 0, 41) - 20;
        int neg = (int)draw(seed, 27, 0, 2);
        uint64_t mag = (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX) + (uint64_t)(int64_t)d;
        snprintf(s, sizeof s, "%s%" PRIu64, neg ? "-" : "", mag);
    } else { /* random bytes from a number-ish alphabet */
        static const char alphabet[] = "0123456789+- .x";
        size_t n = draw(seed, 28, 0, 24);
        for (size_t k = 0; k < n; k++) s[k] = alphabet[draw(seed, 29, k, sizeof alphabet - 1)];
        s[n] = '\0';
    }
    int64_t want = 0, got = 0;
    int want_rc = oracle_i64(s, &want);
    int rc = text_parse_i64(span_of(s), &got);
    CHECK(rc == want_rc && (rc != 0 || got == want), "seed %u: parse '%s' = rc %d, %" PRId64
          "; want rc %d, %" PRId64, seed, s, rc, got, want_rc, want);
}

/* ---- read_file -------------------------------------------------------------------------- */

static void test_read_file(const char *dir, uint32_t seed) {
    char path[512], err[256];
    char *buf = (char *)&path; /* sentinel: a failed read must leave it */
    size_t len = 12345;

    snprintf(path, sizeof path, "%s/missing.csv", dir);
    err[0] = '\0';
    CHECK(text_read_file(path, &buf, &len, err, sizeof err) == -1, "missing file accepted");
    char want[600];
    snprintf(want, sizeof want, "%s: cannot open: ", path);
    CHECK(strncmp(err, want, strlen(want)) == 0, "missing: '%s' starts '%s'", err, want);
    CHECK(strstr(err, "No such file") != NULL, "missing: '%s' says why", err);
    CHECK(buf == (char *)&path && len == 12345, "missing: outputs touched");

    /* A directory opens but cannot be read. */
    err[0] = '\0';
    CHECK(text_read_file(dir, &buf, &len, err, sizeof err) == -1, "directory accepted");
    snprintf(want, sizeof want, "%s: cannot read: ", dir);
    CHECK(strncmp(err, want, strlen(want)) == 0, "directory: '%s' starts '%s'", err, want);

    /* Random bytes, many of them NUL and '\n', of random length (0 included). */
    for (int trial = 0; trial < 6; trial++) {
        size_t n = trial == 0 ? 0 : draw(seed, 30, (uint64_t)trial, 200000);
        char *data = malloc(n + 1);
        for (size_t k = 0; k < n; k++) {
            uint32_t r = rng_u32(seed, RNG_TEST, 31, (uint64_t)trial << 32 | k, 0);
            data[k] = (char)(r % 4 == 0 ? 0 : r % 4 == 1 ? '\n' : (int)(r >> 8));
        }
        snprintf(path, sizeof path, "%s/bytes%d.bin", dir, trial);
        FILE *f = fopen(path, "wb");
        CHECK(f && fwrite(data, 1, n, f) == n && fclose(f) == 0, "writing %s", path);
        buf = NULL, len = 0;
        int rc = text_read_file(path, &buf, &len, err, sizeof err);
        CHECK(rc == 0, "read %s: %s", path, err);
        if (rc == 0) {
            CHECK(len == n, "%s: %zu bytes, want %zu", path, len, n);
            CHECK(len == n && memcmp(buf, data, n) == 0, "%s: bytes differ", path);
            CHECK(buf[len] == '\0', "%s: not NUL-terminated", path);
            free(buf);
        }
        free(data);
    }

    /* A pipe: no size to go by, so the buffer has to grow (several times past 64 KiB). */
    snprintf(path, sizeof path, "%s/fifo", dir);
    CHECK(mkfifo(path, 0600) == 0, "mkfifo %s", path);
    size_t n = 300000 + draw(seed, 32, 0, 1000);
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = fopen(path, "wb");
        if (!f) _exit(1);
        for (size_t k = 0; k < n; k++) fputc((int)(k * 7 % 251), f);
        _exit(fclose(f) == 0 ? 0 : 1);
    }
    buf = NULL, len = 0;
    int rc = text_read_file(path, &buf, &len, err, sizeof err);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fifo writer failed");
    CHECK(rc == 0, "read fifo: %s", err);
    if (rc == 0) {
        size_t bad = 0;
        for (size_t k = 0; k < len; k++) bad += (unsigned char)buf[k] != k * 7 % 251;
        CHECK(len == n && bad == 0 && buf[len] == '\0', "fifo: %zu bytes (want %zu), %zu differ",
              len, n, bad);
        free(buf);
    }
}

/* ---- messages --------------------------------------------------------------------------- */

static void test_messages(uint32_t seed) {
    char err[256];
    CHECK(text_line_error(err, sizeof err, "data/ml/train.csv", 17, "item_id %s is %d", "\"x\"", 5) == -1,
          "returns -1");
    CHECK(strcmp(err, "data/ml/train.csv:17: item_id \"x\" is 5") == 0, "line message: '%s'", err);
    text_line_error(err, sizeof err, "data/ml/train.csv", 0, "empty file");
    CHECK(strcmp(err, "data/ml/train.csv: empty file") == 0, "no-line message: '%s'", err);
    text_line_error(err, sizeof err, "f", INT64_MAX, "big");
    CHECK(strcmp(err, "f:9223372036854775807: big") == 0, "64-bit line: '%s'", err);
    CHECK(text_line_error(NULL, 0, "f", 1, "x") == -1, "NULL err");
    /* Truncation: always terminated, the prefix first. */
    memset(err, 'Q', sizeof err);
    text_line_error(err, 6, "abcdefgh", 3, "msg");
    CHECK(strcmp(err, "abcde") == 0, "cut in the path: '%s'", err);
    memset(err, 'Q', sizeof err);
    text_line_error(err, 10, "ab", 3, "message");
    CHECK(strcmp(err, "ab:3: mes") == 0, "cut in the message: '%s'", err);

    /* Random paths and lines against snprintf. */
    for (int trial = 0; trial < 50; trial++) {
        char path[40], want[256];
        size_t n = 1 + draw(seed, 40, (uint64_t)trial, sizeof path - 1);
        for (size_t k = 0; k < n - 1; k++) path[k] = (char)('a' + draw(seed, 41, (uint64_t)trial * 64 + k, 26));
        path[n - 1] = '\0';
        int64_t line = (int64_t)draw(seed, 42, (uint64_t)trial, 1000000) - 10;
        int v = (int)draw(seed, 43, (uint64_t)trial, 1000);
        if (line > 0) snprintf(want, sizeof want, "%s:%" PRId64 ": v=%d", path, line, v);
        else snprintf(want, sizeof want, "%s: v=%d", path, v);
        text_line_error(err, sizeof err, path, line, "v=%d", v);
        CHECK(strcmp(err, want) == 0, "'%s', want '%s'", err, want);
    }

    char q[64], long_text[64];
    CHECK(strcmp(text_quote(span_of("abc"), q, sizeof q), "\"abc\"") == 0, "quote: %s", q);
    CHECK(strcmp(text_quote(span_of(""), q, sizeof q), "\"\"") == 0, "quote empty: %s", q);
    memset(long_text, 'x', sizeof long_text);
    long_text[40] = 'y';
    text_quote((text_span_t){long_text, 40}, q, sizeof q);
    CHECK(strlen(q) == 42 && q[41] == '"' && !strstr(q, "..."), "quote 40 bytes: %s", q);
    text_quote((text_span_t){long_text, 41}, q, sizeof q);
    CHECK(strlen(q) == 45 && !strchr(q, 'y') && strcmp(q + 41, "...\"") == 0, "quote 41 bytes: %s", q);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    test_lines_fixed();
    for (uint32_t seed = 1; seed <= 300; seed++) test_lines_random(seed);
    test_trim_fixed();
    for (uint32_t seed = 1; seed <= 500; seed++) test_trim_blank(seed);
    test_parse_fixed();
    for (uint32_t seed = 1; seed <= 4000; seed++) test_parse_random(seed);
    char dir[256];
    snprintf(dir, sizeof dir, "%s", du_tempdir("text"));
    test_read_file(dir, 7);
    du_rm_rf(dir);
    test_messages(11);
    return tu_finish("test_text");
}
