/* Fuzz targets: each function feeds one input to one reader of untrusted bytes and returns
 * normally whatever the input (errors are fine; crashes, hangs, leaks and sanitizer reports are
 * bugs). Used by the libFuzzer harnesses (fuzz/fuzz_*.c, `make fuzz`) and by the regression
 * test tests/test_fuzz_regress.c, which replays fuzz/corpus/<target>/ and fuzz/regress/<target>/.
 *
 * Input formats (chosen so that a plain file is a good seed):
 *   corpus:     train.csv [ "\n===\n" dev.csv [ "\n===\n" test.csv ] ]; a missing part repeats
 *               the last one given. Separator ',' when the first line has a ',' and no tab.
 *   config:     command-line words (split at blanks) [ "\n===\n" an .ini file ]; the .ini
 *               is passed as --config FILE (--config words of the input itself are dropped).
 *   corpus_cache: a dataset cache file (corpus_cache.h), mapped without and with its checksum.
 *   checkpoint: a safetensors file, loaded strictly and then partially into a small finetune
 *               model (fuzz_checkpoint_layout). */
#ifndef TIMIREC_FUZZ_TARGETS_H
#define TIMIREC_FUZZ_TARGETS_H

#include <stddef.h>
#include <stdint.h>

#include "timirec/model.h"

#define FUZZ_SPLIT "\n===\n"

typedef int (*fuzz_target_fn)(const uint8_t *data, size_t n);

int fuzz_corpus(const uint8_t *data, size_t n);
int fuzz_corpus_cache(const uint8_t *data, size_t n);
int fuzz_config(const uint8_t *data, size_t n);
int fuzz_checkpoint(const uint8_t *data, size_t n);

/* The model the checkpoint target loads into (also used to write its seed). */
model_layout_t fuzz_checkpoint_layout(void);

/* Target by name ("corpus", "corpus_cache", "config", "checkpoint"), NULL when unknown. */
fuzz_target_fn fuzz_target(const char *name);

#endif
