/* libFuzzer harness of the dataset cache target (targets.h); built and run by `make fuzz`. */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) { return fuzz_corpus_cache(data, n); }
