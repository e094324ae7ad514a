#!/bin/sh
# The code rules a compiler does not check:
#  1. no function in src/ (src/cpu/*.c and *.inc included) or kernels/ (*.cu, *.cuh, and the
#     emulation's *.cpp and *.h) is longer than 150 lines, from its signature line to its
#     closing brace; a multi-line macro (which may define a function) counts the same way;
#  2. no file of README.md, configs/, src/, include/, kernels/ names ../shared (a path outside
#     the repository).
# The function reader (the awk program below) knows this project's layout, not all of C: it
# first runs on a generated file whose lengths are known, so it is seen to fail when it should.
# Usage: sh tests/cli_code_rules.sh [BIN] (BIN, the binary, is not used).
cd "$(dirname "$0")/.." || exit 1
LIMIT=150
fail=0
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

cat > "$tmp/functions.awk" <<'AWK'
# The functions of C, C++ and CUDA sources in this project's layout. A function starts at a
# column-0 line that begins with an identifier (or a [[attribute]]) and holds "(": its
# signature, which may span a few lines and ends with "{" at line end (a comment may follow it)
# or with a "{" alone at column 0. It ends at the next column-0 "}". A multi-line #define (a
# macro that may define a function) counts from its #define to its last continued line.
# Prints "LENGTH FILE:LINE FIRST-LINE" for each one longer than lim lines, and
# "unterminated FILE:LINE ..." for a function without its closing brace (a layout this reader
# does not know).
function unterminated() {
    if (infn) printf "unterminated %s:%d %s\n", prev_file, start, substr(name, 1, 70)
    infn = 0
}
function report(first) {
    n = FNR - first + 1
    if (n > lim) printf "%5d %s:%d %s\n", n, FILENAME, first, substr(name, 1, 70)
}
FNR == 1 { unterminated(); cand = 0; inmacro = 0; prev_file = FILENAME }
infn {
    if (/^\}/) { report(start); infn = 0 }
    next
}
inmacro {
    if (!/\\$/) { report(start); inmacro = 0 }
    next
}
/^[ \t]*#[ \t]*define/ && /\\$/ { inmacro = 1; start = FNR; name = $0; cand = 0; next }
/^[ \t]*$/ || /^#/ { if (/^[ \t]*$/) cand = 0; next }  # no signature spans a blank line; a
                                                       # preprocessor line may sit inside one
(/^[A-Za-z_]/ || /^\[\[/) && !/\(/ { cand = 0 }        # "struct x {", "enum {", "template <...>"
(/^[A-Za-z_]/ || /^\[\[/) && /\(/ &&
    !/^(typedef|struct|enum|union|class|namespace|using)([^A-Za-z0-9_]|$)/ &&
    !/^extern[ \t]+[A-Za-z_]/ { cand = FNR; cand_name = $0 }
cand && (/^\{/ || /\{[ \t]*(\/\*.*\*\/|\/\/.*)?$/) && !/=[ \t]*\{/ {
    if (FNR - cand < 8) { infn = 1; start = cand; name = cand_name }
    cand = 0
    next
}
cand && (/;[ \t]*$/ || /\}[ \t]*$/ || FNR - cand >= 8) { cand = 0 }  # a declaration, a one-liner
END { unterminated() }
AWK
long_functions() { awk -v lim="$LIMIT" -f "$tmp/functions.awk" "$@"; }

# ---- self-test: a file with functions of known lengths ----
# body N: N-2 body lines, so that with its signature and closing brace a function has N lines.
body() { i=2; while [ $i -lt "$1" ]; do echo "    x += $i;"; i=$((i + 1)); done; }
{
    echo 'static int f151(int x) {'; body 151; echo '}'
    echo; echo 'int f150(int x)'; echo '{'; body 149; echo '}'
    echo; echo 'static int one_liner(int x) { return x; }'
    echo 'typedef struct {'; body 160; echo '} not_a_function_t;'
    echo 'int prototype(int x);'; echo 'struct s {'; body 160; echo '};'
    echo; echo 'extern "C" {'; echo 'void in_block(int x);'; echo '}'
    echo; echo '#if defined(__GNUC__)'; echo '__attribute__((format(printf, 1, 2)))'; echo '#endif'
    echo 'extern "C" int c_linkage(const char *f,'; echo '                          int n) { /* why */'
    body 150; echo '}'
    echo; echo 'template <class T>'; echo '__global__ void kernel(T *p) {'; body 152; echo '}'
    echo; echo '[[noreturn]] void stop(void) {'; body 151; echo '}'
    echo; echo 'static const int table[] = {'; body 160; echo '};'
    echo; echo '#define DEFINE_F(name) \'; i=2; while [ $i -lt 151 ]; do echo "    x += $i; \\"; i=$((i + 1)); done
    echo '    }'
} > "$tmp/selftest.c"
got=$(long_functions "$tmp/selftest.c" | sed "s|$tmp/||")
at() { grep -nF "$1" "$tmp/selftest.c" | head -n 1 | cut -d: -f1; }
want="  151 selftest.c:$(at 'int f151(') static int f151(int x) {
  151 selftest.c:$(at 'int c_linkage(') extern \"C\" int c_linkage(const char *f,
  152 selftest.c:$(at 'void kernel(') __global__ void kernel(T *p) {
  151 selftest.c:$(at 'void stop(') [[noreturn]] void stop(void) {
  151 selftest.c:$(at '#define DEFINE_F') #define DEFINE_F(name) \\"
if [ "$got" = "$want" ]; then
    echo "ok: the function reader flags exactly the functions and the macro over $LIMIT lines of its self-test"
else
    echo "FAIL: the function reader's self-test:"; echo "got:"; echo "$got"; echo "want:"; echo "$want"
    fail=1
fi

# ---- rule 1 ----
files=$(find src kernels -type f \( -name '*.c' -o -name '*.h' -o -name '*.inc' -o -name '*.cu' \
    -o -name '*.cuh' -o -name '*.cpp' \) | sort)
long=$(long_functions $files)
if [ -z "$long" ]; then
    echo "ok: no function over $LIMIT lines in src/ and kernels/ ($(echo "$files" | wc -l) files)"
else
    echo "FAIL: functions over $LIMIT lines (length file:line):"; echo "$long"
    fail=1
fi

# ---- rule 2 ----
outside=$(grep -rnF '../shared' README.md configs src include kernels)
if [ -z "$outside" ]; then
    echo "ok: README.md, configs/, src/, include/, kernels/ name no ../shared"
else
    echo "FAIL: paths outside the repository:"; echo "$outside"
    fail=1
fi
exit $fail
