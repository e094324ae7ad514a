/* The binary dataset cache (corpus_cache.h; docs/MODEL.md, "The corpus").
 *
 * Nothing in a cache file is trusted: the header is checked field by field before the file is
 * mapped, the checksum before any array is read, and corpus_check before the corpus is
 * returned, so a truncated, corrupt or foreign file is refused (and rebuilt), never indexed. */
#include "timirec/corpus_cache.h"

#include "timirec/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <omp.h>

#define CACHE_MAGIC "TMRCACHE"
#define BYTE_ORDER_MARK 0x01020304u
#define ALIGN 64u
#define BLOCK ((uint64_t)1 << 20) /* checksum block */
#define PRINT_BYTES 65536         /* head and tail of each CSV in its fingerprint */
#define PARALLEL_MIN (1 << 24)    /* elements below which a check runs on one thread */

/* Arrays in file order: six per phase, then the sequences and the two clicked sets. */
enum { ARR_PER_PHASE = 6, N_ARRAYS = N_PHASES * ARR_PER_PHASE + 6 };
static const size_t phase_elem[ARR_PER_PHASE] = {4, 4, 8, 4, 4, 8}; /* user item time position neg inst_row */
static const size_t global_elem[6] = {8, 4, 8, 4, 8, 4}; /* seq_off seq_item train_off train_items all_off all_items */

typedef struct {
    int64_t n_rows, n_inst;
    int32_t n_neg, has_neg;
} cache_phase_t;

typedef struct {
    uint64_t offset, bytes;
} cache_span_t;

typedef struct {
    char magic[8];
    uint32_t version, byte_order;
    uint64_t file_size;
    uint64_t checksum; /* of bytes [CHECKSUM_START, file_size) */
    uint32_t header_bytes, n_arrays;
    corpus_source_t src;
    int32_t n_users, n_items, max_train_clicked, pad;
    int64_t n_seq_users, n_single_users, n_duplicate_rows;
    cache_phase_t phase[N_PHASES];
    cache_span_t array[N_ARRAYS];
} cache_header_t;

#define CHECKSUM_START (offsetof(cache_header_t, checksum) + sizeof(uint64_t))
_Static_assert(sizeof(cache_header_t) == 40 + sizeof(corpus_source_t) + 16 + 24 +
                                             N_PHASES * 24 + N_ARRAYS * 16,
               "the cache header has no padding (every byte is written and checksummed)");

static int say(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int say(char *why, size_t n, const char *fmt, ...) {
    if (why && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Hashing: XXH64's round and avalanche on native 8-byte words (the byte order is checked
 * before any hash is compared). */

#define H1 0x9E3779B185EBCA87ULL
#define H2 0xC2B2AE3D27D4EB4FULL
#define H3 0x165667B19E3779F9ULL
#define H4 0x85EBCA77C2B2AE63ULL
#define H5 0x27D4EB2F165667C5ULL

static uint64_t rotl64(uint64_t x, int r) { return x << r | x >> (64 - r); }
static uint64_t hash_round(uint64_t acc, uint64_t w) { return rotl64(acc + w * H2, 31) * H1; }
static uint64_t load64(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static uint64_t hash_bytes(const void *data, size_t n, uint64_t seed) {
    const unsigned char *b = data;
    uint64_t v[4] = {seed + H1 + H2, seed + H2, seed, seed - H1};
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++) v[k] = hash_round(v[k], load64(b + i + 8 * k));
    uint64_t h = rotl64(v[0], 1) + rotl64(v[1], 7) + rotl64(v[2], 12) + rotl64(v[3], 18) + n;
    for (; i + 8 <= n; i += 8) h = rotl64(h ^ hash_round(0, load64(b + i)), 27) * H1 + H4;
    for (; i < n; i++) h = rotl64(h ^ (b[i] * H5), 11) * H1;
    h ^= h >> 33;
    h *= H2;
    h ^= h >> 29;
    h *= H3;
    return h ^ (h >> 32);
}

/* The checksum of n bytes: each 1 MiB block hashed alone (in parallel), then the list. */
static uint64_t checksum_of_blocks(const uint64_t *block_hash, int64_t n_blocks) {
    return hash_bytes(block_hash, (size_t)n_blocks * sizeof *block_hash, (uint64_t)n_blocks);
}

static uint64_t checksum(const unsigned char *p, uint64_t n) {
    int64_t nb = (int64_t)((n + BLOCK - 1) / BLOCK);
    uint64_t *h = tmr_malloc(tmr_mul_size((size_t)nb + 1, sizeof *h));
#pragma omp parallel for schedule(static) if (nb > 256)
    for (int64_t b = 0; b < nb; b++) {
        uint64_t at = (uint64_t)b * BLOCK;
        h[b] = hash_bytes(p + at, (size_t)(n - at < BLOCK ? n - at : BLOCK), (uint64_t)b);
    }
    uint64_t sum = checksum_of_blocks(h, nb);
    free(h);
    return sum;
}

/* ------------------------------------------------------------------------------------------ */
/* The CSVs' fingerprint */

static int csv_print(const char *path, corpus_csv_print_t *out, char *why, size_t n) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return say(why, n, "%s: %s", path, strerror(e));
    }
    uint64_t size = (uint64_t)st.st_size;
    size_t head = size < PRINT_BYTES ? (size_t)size : PRINT_BYTES;
    unsigned char *buf = tmr_malloc(2 * PRINT_BYTES);
    ssize_t got_head = pread(fd, buf, head, 0);
    ssize_t got_tail = pread(fd, buf + head, head, (off_t)(size - head));
    int e = errno;
    close(fd);
    if (got_head != (ssize_t)head || got_tail != (ssize_t)head) {
        free(buf);
        return say(why, n, "%s: cannot read: %s", path, got_head < 0 || got_tail < 0 ?
                   strerror(e) : "file shrank while read");
    }
    *out = (corpus_csv_print_t){size, (int64_t)st.st_mtim.tv_sec, (int64_t)st.st_mtim.tv_nsec,
                                hash_bytes(buf, 2 * head, size)};
    free(buf);
    return 0;
}

int corpus_source_read(const corpus_opts_t *opts, corpus_source_t *src, char *why, size_t n) {
    memset(src, 0, sizeof *src);
    src->sep = (unsigned char)(opts->sep ? opts->sep : '\t');
    for (int p = 0; p < N_PHASES; p++) {
        char name[16], path[4096];
        snprintf(name, sizeof name, "%s.csv", corpus_phase_names[p]);
        corpus_file_path(opts, name, path, sizeof path);
        if (csv_print(path, &src->csv[p], why, n)) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Layout shared by the writer and the reader */

static uint64_t align_up(uint64_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

static size_t array_elem(int k) {
    return k < N_PHASES * ARR_PER_PHASE ? phase_elem[k % ARR_PER_PHASE]
                                        : global_elem[k - N_PHASES * ARR_PER_PHASE];
}

/* The arrays of c in file order. */
static void arrays_of(const corpus_t *c, const void *ptr[N_ARRAYS]) {
    int k = 0;
    for (int p = 0; p < N_PHASES; p++) {
        const corpus_phase_t *ph = &c->phase[p];
        ptr[k++] = ph->user;
        ptr[k++] = ph->item;
        ptr[k++] = ph->time;
        ptr[k++] = ph->position;
        ptr[k++] = ph->neg;
        ptr[k++] = ph->inst_row;
    }
    const void *g[6] = {c->seq_off, c->seq_item, c->train_off, c->train_items, c->all_off,
                        c->all_items};
    memcpy(ptr + k, g, sizeof g);
}

/* Point c's arrays at base + each span's offset (spans validated). */
static void arrays_point(corpus_t *c, unsigned char *base, const cache_span_t *sp) {
    int k = 0;
    for (int p = 0; p < N_PHASES; p++) {
        corpus_phase_t *ph = &c->phase[p];
        ph->user = (int32_t *)(void *)(base + sp[k++].offset);
        ph->item = (int32_t *)(void *)(base + sp[k++].offset);
        ph->time = (int64_t *)(void *)(base + sp[k++].offset);
        ph->position = (int32_t *)(void *)(base + sp[k++].offset);
        ph->neg = (int32_t *)(void *)(base + sp[k++].offset);
        ph->inst_row = (int64_t *)(void *)(base + sp[k++].offset);
    }
    c->seq_off = (int64_t *)(void *)(base + sp[k++].offset);
    c->seq_item = (int32_t *)(void *)(base + sp[k++].offset);
    c->train_off = (int64_t *)(void *)(base + sp[k++].offset);
    c->train_items = (int32_t *)(void *)(base + sp[k++].offset);
    c->all_off = (int64_t *)(void *)(base + sp[k++].offset);
    c->all_items = (int32_t *)(void *)(base + sp[k++].offset);
}

/* Element count of array k given the header's counts; -1 for the clicked items (their length
 * is whatever the file says, checked against the offsets by corpus_check). The counts are
 * validated first, so nothing here overflows. */
static int64_t array_count(const cache_header_t *h, int k) {
    if (k < N_PHASES * ARR_PER_PHASE) {
        const cache_phase_t *ph = &h->phase[k / ARR_PER_PHASE];
        switch (k % ARR_PER_PHASE) {
        case 4: return ph->n_rows * (int64_t)ph->n_neg;
        case 5: return ph->n_inst;
        default: return ph->n_rows;
        }
    }
    int g = k - N_PHASES * ARR_PER_PHASE;
    if (g == 3 || g == 5) return -1;
    if (g == 1) return h->phase[0].n_rows + h->phase[1].n_rows + h->phase[2].n_rows;
    return (int64_t)h->n_users + 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Writing: one pass, 1 MiB at a time, each block hashed as it goes out. */

typedef struct {
    int fd;
    unsigned char *buf; /* (BLOCK) */
    size_t fill;
    uint64_t *block_hash;
    int64_t n_blocks;
    int err; /* errno of the first failed write, 0 when none */
} writer_t;

static int write_all(int fd, const void *p, size_t n) {
    const char *s = p;
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return errno ? errno : EIO;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static void writer_flush(writer_t *w) {
    if (!w->fill) return;
    w->block_hash[w->n_blocks] = hash_bytes(w->buf, w->fill, (uint64_t)w->n_blocks);
    w->n_blocks++;
    if (!w->err) w->err = write_all(w->fd, w->buf, w->fill);
    w->fill = 0;
}

/* n bytes of p, or of zeros when p is NULL. */
static void writer_put(writer_t *w, const void *p, uint64_t n) {
    const unsigned char *s = p;
    while (n) {
        size_t take = (size_t)(BLOCK - w->fill < n ? BLOCK - w->fill : n);
        if (s) memcpy(w->buf + w->fill, s, take);
        else memset(w->buf + w->fill, 0, take);
        w->fill += take;
        n -= take;
        if (s) s += take;
        if (w->fill == BLOCK) writer_flush(w);
    }
}

/* The header of c: counts and the spans of the arrays. */
static void header_of(const corpus_t *c, const corpus_source_t *src, cache_header_t *h) {
    memset(h, 0, sizeof *h);
    memcpy(h->magic, CACHE_MAGIC, 8);
    h->version = CORPUS_CACHE_VERSION;
    h->byte_order = BYTE_ORDER_MARK;
    h->header_bytes = sizeof *h;
    h->n_arrays = N_ARRAYS;
    h->src = *src;
    h->n_users = c->n_users;
    h->n_items = c->n_items;
    h->max_train_clicked = c->max_train_clicked;
    h->n_seq_users = c->n_seq_users;
    h->n_single_users = c->n_single_users;
    h->n_duplicate_rows = c->n_duplicate_rows;
    for (int p = 0; p < N_PHASES; p++)
        h->phase[p] = (cache_phase_t){c->phase[p].n_rows, c->phase[p].n_inst, c->phase[p].n_neg,
                                      c->phase[p].has_neg};
    uint64_t at = align_up(sizeof *h);
    for (int k = 0; k < N_ARRAYS; k++) {
        int64_t count = array_count(h, k);
        if (count < 0) /* the clicked items: the end of their offsets */
            count = k == N_ARRAYS - 3 ? c->train_off[c->n_users] : c->all_off[c->n_users];
        h->array[k] = (cache_span_t){at, (uint64_t)count * array_elem(k)};
        at = align_up(at + h->array[k].bytes);
    }
    h->file_size = at;
}

int corpus_cache_write(const char *path, const corpus_t *c, const corpus_source_t *src, char *why,
                       size_t n) {
    cache_header_t h;
    header_of(c, src, &h);
    const void *ptr[N_ARRAYS];
    arrays_of(c, ptr);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return say(why, n, "cannot create %s: %s", path, strerror(errno));
    writer_t w = {.fd = fd, .buf = tmr_malloc(BLOCK)};
    w.block_hash = tmr_malloc(tmr_mul_size((size_t)(h.file_size / BLOCK + 2), sizeof(uint64_t)));
    w.err = write_all(fd, &h, CHECKSUM_START);
    writer_put(&w, (const unsigned char *)&h + CHECKSUM_START, sizeof h - CHECKSUM_START);
    uint64_t at = sizeof h;
    for (int k = 0; k < N_ARRAYS; k++) {
        writer_put(&w, NULL, h.array[k].offset - at);
        writer_put(&w, ptr[k], h.array[k].bytes);
        at = h.array[k].offset + h.array[k].bytes;
    }
    writer_put(&w, NULL, h.file_size - at);
    writer_flush(&w);
    h.checksum = checksum_of_blocks(w.block_hash, w.n_blocks);
    if (!w.err && pwrite(fd, &h.checksum, sizeof h.checksum, offsetof(cache_header_t, checksum)) !=
                      (ssize_t)sizeof h.checksum)
        w.err = errno ? errno : EIO;
    if (close(fd) != 0 && !w.err) w.err = errno;
    free(w.buf);
    free(w.block_hash);
    if (w.err) {
        unlink(path);
        return say(why, n, "writing %s failed: %s", path, strerror(w.err));
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading */

/* The header's counts and spans against each other and the file size. */
static int header_check(const cache_header_t *h, uint64_t file_size, char *why, size_t n) {
    if (h->header_bytes != sizeof *h || h->n_arrays != N_ARRAYS)
        return say(why, n, "header of %u bytes and %u arrays (expected %zu and %d)",
                   h->header_bytes, h->n_arrays, sizeof *h, N_ARRAYS);
    if (h->file_size != file_size)
        return say(why, n, "truncated or extended: the header says %llu bytes, the file has %llu",
                   (unsigned long long)h->file_size, (unsigned long long)file_size);
    if (h->n_users < 1 || h->n_users == INT32_MAX || h->n_items < 1)
        return say(why, n, "n_users %d, n_items %d out of range", h->n_users, h->n_items);
    for (int p = 0; p < N_PHASES; p++) {
        const cache_phase_t *ph = &h->phase[p];
        /* A row takes at least 20 bytes of the file: bounds every product below. */
        if (ph->n_rows < 1 || (uint64_t)ph->n_rows > file_size / 20 || ph->n_neg < 0 ||
            (ph->n_neg && (uint64_t)ph->n_neg > file_size / 4 / (uint64_t)ph->n_rows) ||
            ph->n_inst < 0 || ph->n_inst > ph->n_rows || (ph->has_neg != 0 && ph->has_neg != 1) ||
            (!ph->has_neg && ph->n_neg))
            return say(why, n, "%s counts out of range (rows %lld, negatives %d, instances %lld)",
                       corpus_phase_names[p], (long long)ph->n_rows, ph->n_neg,
                       (long long)ph->n_inst);
    }
    if ((uint64_t)h->n_users + 1 > file_size / 8)
        return say(why, n, "n_users %d does not fit in the file", h->n_users);
    uint64_t end = sizeof *h;
    for (int k = 0; k < N_ARRAYS; k++) {
        const cache_span_t *s = &h->array[k];
        int64_t count = array_count(h, k);
        size_t elem = array_elem(k);
        if (s->offset % ALIGN || s->offset < end || s->offset > file_size ||
            s->bytes > file_size - s->offset || s->bytes % elem ||
            (count >= 0 && s->bytes != (uint64_t)count * elem))
            return say(why, n, "array %d at %llu (%llu bytes) is out of place", k,
                       (unsigned long long)s->offset, (unsigned long long)s->bytes);
        end = s->offset + s->bytes;
    }
    return 0;
}

/* Magic, version, byte order, fingerprint: why the file is not this dataset's cache. */
static int header_identity(const cache_header_t *h, const corpus_source_t *expect, char *why,
                           size_t n) {
    if (memcmp(h->magic, CACHE_MAGIC, 8) != 0) return say(why, n, "not a timirec corpus cache");
    if (h->byte_order != BYTE_ORDER_MARK)
        return say(why, n, "written on a machine of the other byte order");
    if (h->version != CORPUS_CACHE_VERSION)
        return say(why, n, "format version %u (this build reads %u)", h->version,
                   CORPUS_CACHE_VERSION);
    if (!expect) return 0;
    if (h->src.sep != expect->sep)
        return say(why, n, "built with another separator (%u, now %u)", h->src.sep, expect->sep);
    for (int p = 0; p < N_PHASES; p++)
        if (memcmp(&h->src.csv[p], &expect->csv[p], sizeof expect->csv[p]) != 0)
            return say(why, n, "%s.csv changed since it was built (size, mtime or content)",
                       corpus_phase_names[p]);
    return 0;
}

void corpus_cache_unmap(void *map, size_t bytes) {
    if (map) munmap(map, bytes);
}

int corpus_cache_map(const char *path, const corpus_source_t *expect, int verify_checksum,
                     corpus_t *c, char *why, size_t n) {
    memset(c, 0, sizeof *c);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return say(why, n, "%s", e == ENOENT ? "absent" : strerror(e));
    }
    cache_header_t h;
    uint64_t size = (uint64_t)st.st_size;
    int rc = size < sizeof h ? say(why, n, "truncated (%llu bytes)", (unsigned long long)size)
           : pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h ? say(why, n, "cannot read the header")
           : 0;
    if (!rc) rc = header_identity(&h, expect, why, n);
    if (!rc) rc = header_check(&h, size, why, n);
    unsigned char *map = NULL;
    if (!rc) {
        map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        if (map == MAP_FAILED) {
            map = NULL;
            rc = say(why, n, "cannot map it: %s", strerror(errno));
        }
    }
    close(fd);
    if (!rc && verify_checksum && checksum(map + CHECKSUM_START, size - CHECKSUM_START) != h.checksum)
        rc = say(why, n, "checksum mismatch (corrupt)");
    if (!rc) {
        c->n_users = h.n_users;
        c->n_items = h.n_items;
        c->max_train_clicked = h.max_train_clicked;
        c->n_seq_users = h.n_seq_users;
        c->n_single_users = h.n_single_users;
        c->n_duplicate_rows = h.n_duplicate_rows;
        for (int p = 0; p < N_PHASES; p++) {
            c->phase[p].n_rows = h.phase[p].n_rows;
            c->phase[p].n_inst = h.phase[p].n_inst;
            c->phase[p].n_neg = h.phase[p].n_neg;
            c->phase[p].has_neg = h.phase[p].has_neg;
        }
        arrays_point(c, map, h.array);
        rc = corpus_check(c, (int64_t)(h.array[N_ARRAYS - 3].bytes / 4),
                          (int64_t)(h.array[N_ARRAYS - 1].bytes / 4), why, n);
    }
    if (rc) {
        corpus_cache_unmap(map, (size_t)size);
        memset(c, 0, sizeof *c);
        return -1;
    }
    c->map = map;
    c->map_bytes = (size_t)size;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Structural checks */

/* off[0] == 0, non-decreasing, off[n_users] == len. */
static int check_offsets(const int64_t *off, int32_t n_users, int64_t len, const char *name,
                         char *why, size_t n) {
    if (off[0] != 0 || off[n_users] != len)
        return say(why, n, "%s starts at %lld and ends at %lld (expected 0 and %lld)", name,
                   (long long)off[0], (long long)off[n_users], (long long)len);
    for (int32_t u = 0; u < n_users; u++)
        if (off[u + 1] < off[u]) return say(why, n, "%s decreases at user %d", name, u);
    return 0;
}

/* Clicked sets: ids in [1, n_items), strictly increasing per user. */
static int check_sets(const int64_t *off, const int32_t *items, int32_t n_users, int32_t n_items,
                      const char *name, char *why, size_t n) {
    int64_t bad = -1;
#pragma omp parallel for schedule(dynamic, 1024) reduction(max : bad) if (off[n_users] > PARALLEL_MIN)
    for (int32_t u = 0; u < n_users; u++)
        for (int64_t i = off[u]; i < off[u + 1]; i++)
            if (items[i] < 1 || items[i] >= n_items || (i > off[u] && items[i] <= items[i - 1]))
                bad = u;
    return bad < 0 ? 0 : say(why, n, "%s of user %lld not sorted ids in range", name, (long long)bad);
}

/* Ids of a list in [1, limit): one unsigned comparison per id, no branch (vectorised); the
 * first bad one is looked for only when there is one. */
static int check_ids(const int32_t *ids, int64_t count, int32_t limit, const char *name,
                     char *why, size_t n) {
    uint32_t bad = 0, span = (uint32_t)limit - 1u;
#pragma omp parallel for schedule(static) reduction(| : bad) if (count > PARALLEL_MIN)
    for (int64_t i = 0; i < count; i++) bad |= (uint32_t)ids[i] - 1u >= span;
    if (!bad) return 0;
    int64_t i = 0;
    while ((uint32_t)ids[i] - 1u < span) i++;
    return say(why, n, "%s[%lld] = %d out of range [1, %d)", name, (long long)i, ids[i], limit);
}

/* A well-mixed 64-bit value of (position, item): splitmix64's finaliser. */
static uint64_t slot_mix(int64_t pos, int32_t item) {
    uint64_t z = ((uint64_t)pos << 32 ^ (uint32_t)item) + H1;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Each row's position is in its user's sequence, and the rows of each user, as (position,
 * item) pairs, are exactly the user's sequence slots: compared as sums of a 64-bit mix of
 * each pair (per user and thread, in tables that stay in cache, instead of a random read of
 * the sequence per row). Instances are exactly the rows with position > 0, in row order. */
static int check_positions(const corpus_t *c, char *why, size_t n) {
    int64_t U = c->n_users, total = 0;
    for (int p = 0; p < N_PHASES; p++) total += c->phase[p].n_rows;
    int T = total > PARALLEL_MIN / 4 ? omp_get_max_threads() : 1;
    uint64_t *acc = tmr_calloc(tmr_mul_size((size_t)T, (size_t)U + 1), sizeof *acc); /* (T, U+1) */
    int rc = 0;
    for (int p = 0; p < N_PHASES && !rc; p++) {
        const corpus_phase_t *ph = &c->phase[p];
        int64_t first_bad = INT64_MAX;
#pragma omp parallel num_threads(T) reduction(min : first_bad)
        {
            uint64_t *mine = acc + (size_t)omp_get_thread_num() * (size_t)(U + 1);
#pragma omp for schedule(static)
            for (int64_t r = 0; r < ph->n_rows; r++) {
                int32_t u = ph->user[r], pos = ph->position[r];
                if (pos < 0 || pos >= c->seq_off[u + 1] - c->seq_off[u]) first_bad = r < first_bad ? r : first_bad;
                else mine[u] += slot_mix(pos, ph->item[r]);
            }
        }
        if (first_bad != INT64_MAX) {
            rc = say(why, n, "%s row %lld: position %d is past user %d's sequence",
                     corpus_phase_names[p], (long long)first_bad, ph->position[first_bad],
                     ph->user[first_bad]);
            break;
        }
        int64_t k = 0;
        for (int64_t r = 0; r < ph->n_rows && !rc; r++)
            if (ph->position[r] > 0 && (k >= ph->n_inst || ph->inst_row[k++] != r))
                rc = say(why, n, "%s instance %lld is not row %lld", corpus_phase_names[p],
                         (long long)(k - 1), (long long)r);
        if (!rc && k != ph->n_inst)
            rc = say(why, n, "%s has %lld instances, not %lld", corpus_phase_names[p],
                     (long long)k, (long long)ph->n_inst);
    }
    int64_t bad = -1;
    if (!rc) {
#pragma omp parallel for schedule(dynamic, 1024) reduction(max : bad) if (T > 1)
        for (int64_t u = 0; u < U; u++) {
            uint64_t sum = 0, want = 0;
            for (int64_t i = c->seq_off[u]; i < c->seq_off[u + 1]; i++)
                sum += slot_mix(i - c->seq_off[u], c->seq_item[i]);
            for (int t = 0; t < T; t++) want += acc[(size_t)t * (size_t)(U + 1) + (size_t)u];
            if (sum != want) bad = u;
        }
    }
    if (bad >= 0)
        rc = say(why, n, "user %lld's rows are not the items of their sequence", (long long)bad);
    free(acc);
    return rc;
}

/* The facts the loader logs, recomputed. */
static int check_facts(const corpus_t *c, int64_t total, char *why, size_t n) {
    int64_t seq_users = 0, single = 0, max_clicked = 0;
    for (int32_t u = 0; u < c->n_users; u++) {
        int64_t len = c->seq_off[u + 1] - c->seq_off[u], clicked = c->train_off[u + 1] - c->train_off[u];
        seq_users += len > 0;
        single += len == 1;
        if (clicked > max_clicked) max_clicked = clicked;
    }
    if (seq_users != c->n_seq_users || single != c->n_single_users ||
        max_clicked != c->max_train_clicked || c->n_duplicate_rows < 0 ||
        c->n_duplicate_rows > total)
        return say(why, n, "user counts disagree with the sequences");
    return 0;
}

int corpus_check(const corpus_t *c, int64_t n_train_items, int64_t n_all_items, char *why,
                 size_t n) {
    int32_t U = c->n_users, I = c->n_items;
    if (U < 1 || I < 1) return say(why, n, "n_users %d, n_items %d", U, I);
    int64_t total = 0;
    for (int p = 0; p < N_PHASES; p++) {
        const corpus_phase_t *ph = &c->phase[p];
        if (ph->n_rows < 1 || ph->n_neg < 0 || ph->n_inst < 0 || ph->n_inst > ph->n_rows ||
            (!ph->has_neg && ph->n_neg))
            return say(why, n, "%s counts out of range", corpus_phase_names[p]);
        total += ph->n_rows;
    }
    if (n_train_items > c->phase[PHASE_TRAIN].n_rows || n_all_items > total)
        return say(why, n, "clicked sets longer than the rows");
    if (check_offsets(c->seq_off, U, total, "seq_off", why, n) ||
        check_offsets(c->train_off, U, n_train_items, "train_off", why, n) ||
        check_offsets(c->all_off, U, n_all_items, "all_off", why, n))
        return -1;
    for (int p = 0; p < N_PHASES; p++) {
        const corpus_phase_t *ph = &c->phase[p];
        char name[32];
        snprintf(name, sizeof name, "%s user", corpus_phase_names[p]);
        if (check_ids(ph->user, ph->n_rows, U, name, why, n)) return -1;
        snprintf(name, sizeof name, "%s item", corpus_phase_names[p]);
        if (check_ids(ph->item, ph->n_rows, I, name, why, n)) return -1;
        snprintf(name, sizeof name, "%s neg", corpus_phase_names[p]);
        if (check_ids(ph->neg, ph->n_rows * (int64_t)ph->n_neg, I, name, why, n)) return -1;
    }
    if (check_ids(c->seq_item, total, I, "seq_item", why, n) ||
        check_sets(c->train_off, c->train_items, U, I, "train clicked set", why, n) ||
        check_sets(c->all_off, c->all_items, U, I, "clicked set", why, n) ||
        check_positions(c, why, n) || check_facts(c, total, why, n))
        return -1;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Loading with the cache */

/* Whether the folder is read-only: no write permission bit at all (a folder marked read-only
 * is left alone even by root), or not writable by this process. */
static int folder_read_only(const char *dir) {
    struct stat st;
    return stat(dir, &st) == 0 && (!(st.st_mode & 0222) || access(dir, W_OK) != 0);
}

static int lock_wait(int fd) {
    int rc;
    while ((rc = flock(fd, LOCK_EX)) != 0 && errno == EINTR) {
    }
    return rc;
}

/* Whether the cache file was written at or after t (by another run since this one started). */
static int written_since(const char *path, const struct timespec *t) {
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    return st.st_mtim.tv_sec > t->tv_sec ||
           (st.st_mtim.tv_sec == t->tv_sec && st.st_mtim.tv_nsec >= t->tv_nsec);
}

/* Holding the lock: parse, and write the cache unless the CSVs changed meanwhile. */
static int parse_and_write(const corpus_opts_t *opts, const corpus_source_t *src,
                           const char *cache, const char *old_why, corpus_t *c, char *err,
                           size_t errlen) {
    if (corpus_parse(opts, c, err, errlen)) return -1;
    corpus_source_t after;
    char why[600], tmp[4200];
    if (corpus_source_read(opts, &after, why, sizeof why) || memcmp(&after, src, sizeof after)) {
        say(c->cache_note, sizeof c->cache_note, "Dataset cache: not written (a CSV changed "
            "while it was read); parsed the CSVs");
        return 0;
    }
    say(tmp, sizeof tmp, "%s.tmp", cache);
    int wrc = corpus_cache_write(tmp, c, src, why, sizeof why);
    if (!wrc && rename(tmp, cache) != 0) {
        wrc = say(why, sizeof why, "cannot rename %s: %s", tmp, strerror(errno));
        unlink(tmp);
    }
    if (wrc)
        say(c->cache_note, sizeof c->cache_note, "Dataset cache: not written (%s); parsed "
            "the CSVs", why);
    else
        say(c->cache_note, sizeof c->cache_note, "Dataset cache: wrote %s%s%s%s", cache,
            *old_why ? " (rebuilt: " : "", old_why, *old_why ? ")" : "");
    return 0;
}

int corpus_cache_load(const corpus_opts_t *opts, corpus_t *c, char *err, size_t errlen) {
    struct timespec t_start;
    clock_gettime(CLOCK_REALTIME, &t_start);
    char dir[4096], cache[4200], lock[4200], why[600] = "";
    corpus_file_path(opts, "", dir, sizeof dir);
    corpus_file_path(opts, CORPUS_CACHE_FILE, cache, sizeof cache);
    corpus_file_path(opts, CORPUS_CACHE_LOCK, lock, sizeof lock);
    corpus_source_t src;
    /* A CSV that cannot be read: the parser says which and why. */
    if (corpus_source_read(opts, &src, why, sizeof why)) return corpus_parse(opts, c, err, errlen);
    if (opts->cache != CORPUS_CACHE_REBUILD) {
        if (corpus_cache_map(cache, &src, 1, c, why, sizeof why) == 0) {
            say(c->cache_note, sizeof c->cache_note, "Dataset cache: read %s", cache);
            return 0;
        }
        if (strcmp(why, "absent") == 0) why[0] = '\0';
    } else {
        snprintf(why, sizeof why, "--regenerate 1");
    }
    int read_only = folder_read_only(dir), fd = -1;
    if (read_only || (fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0 ||
        lock_wait(fd) != 0) {
        char what[600];
        if (read_only) say(what, sizeof what, "the folder %s is read-only", dir);
        else say(what, sizeof what, "cannot %s %s: %s", fd < 0 ? "create" : "lock", lock,
                 strerror(errno));
        if (fd >= 0) close(fd);
        int rc = corpus_parse(opts, c, err, errlen);
        if (!rc)
            say(c->cache_note, sizeof c->cache_note, "Dataset cache: none (%s); parsed the "
                "CSVs", what);
        return rc;
    }
    /* Another run may have built it while this one waited for the lock. */
    char why2[600];
    int fresh = opts->cache != CORPUS_CACHE_REBUILD || written_since(cache, &t_start);
    if (fresh && corpus_cache_map(cache, &src, 1, c, why2, sizeof why2) == 0) {
        say(c->cache_note, sizeof c->cache_note, "Dataset cache: read %s (built by a "
            "concurrent run)", cache);
        close(fd); /* releases the lock */
        return 0;
    }
    int rc = parse_and_write(opts, &src, cache, why, c, err, errlen);
    close(fd);
    return rc;
}
