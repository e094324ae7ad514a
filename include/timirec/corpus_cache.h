/* The binary dataset cache (docs/MODEL.md, "The corpus"): everything corpus_t holds, written
 * beside the CSVs by the first load (<path>/<dataset>/timirec_corpus.bin) and mapped read-only
 * by later ones, the counterpart of the reference's SeqReader.pkl.
 *
 * File: a fixed header (magic, format version, byte-order mark, file size, checksum, the
 * separator, a fingerprint of each CSV, the corpus' counts, and the offset and length of each
 * array), then the arrays, each at a 64-byte aligned offset, in the writer's byte order. The
 * checksum (a 64-bit XXH64-style hash over 1 MiB blocks, hashed in parallel) covers every byte
 * after the checksum field.
 *
 * A cache is used only when the magic, version, byte order, size and checksum are right, its
 * fingerprint matches the CSVs now on disk (size, mtime and a hash of the first and last
 * 64 KiB of each file, and the separator) and every offset, count and index inside it passes
 * corpus_check; otherwise it is rebuilt. Writers take an flock on timirec_corpus.lock, write
 * timirec_corpus.bin.tmp and rename it into place, so concurrent loads build it once and never
 * read half a file. */
#ifndef TIMIREC_CORPUS_CACHE_H
#define TIMIREC_CORPUS_CACHE_H

#include "timirec/corpus.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CORPUS_CACHE_FILE "timirec_corpus.bin"
#define CORPUS_CACHE_LOCK "timirec_corpus.lock"
#define CORPUS_CACHE_VERSION 1u

/* What the cache was built from: each CSV's size, mtime and head/tail hash, and the separator. */
typedef struct {
    uint64_t size;
    int64_t mtime_s, mtime_ns;
    uint64_t hash; /* of the first and the last 64 KiB */
} corpus_csv_print_t;

typedef struct {
    corpus_csv_print_t csv[N_PHASES];
    uint32_t sep;
    uint32_t pad;
} corpus_source_t;

/* The fingerprint of the dataset's CSVs now. Returns 0, or -1 with why (a file unreadable). */
int corpus_source_read(const corpus_opts_t *opts, corpus_source_t *src, char *why, size_t n);

/* Write c as a cache file at path (replaced when present; not atomic: corpus_cache_load writes a
 * temporary and renames). Returns 0, or -1 with why (the partial file removed). */
int corpus_cache_write(const char *path, const corpus_t *c, const corpus_source_t *src, char *why,
                       size_t n);

/* Map the cache at path into c (arrays point into the mapping; corpus_free unmaps). expect:
 * the fingerprint it must carry (NULL: any); verify_checksum 0 skips the checksum (the fuzz
 * target, to reach the structural checks). Returns 0, or -1 with why (c left empty). */
int corpus_cache_map(const char *path, const corpus_source_t *expect, int verify_checksum,
                     corpus_t *c, char *why, size_t n);
void corpus_cache_unmap(void *map, size_t bytes);

/* Every count, offset and index of c consistent (what readers of a corpus rely on: ids in
 * range, CSR offsets monotone and in bounds, each row's position naming its own slot of its
 * user's sequence, instances exactly the rows with position > 0, clicked sets sorted and
 * unique). n_train_items, n_all_items: the lengths of train_items and all_items. Returns 0, or
 * -1 with what is wrong. */
int corpus_check(const corpus_t *c, int64_t n_train_items, int64_t n_all_items, char *why,
                 size_t n);

/* corpus_load with opts->cache on: map a valid cache, else parse and (holding the lock) write
 * one; a read-only folder or a failed write leaves the parsed corpus and says so in
 * c->cache_note. Returns as corpus_load. */
int corpus_cache_load(const corpus_opts_t *opts, corpus_t *c, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
