/* How much memory a training run will take, computed before anything large is allocated, so
 * that a request that cannot fit is refused at once with what it needs (instead of an
 * allocation failure minutes later, or swapping). Every size is computed in 64-bit integers,
 * saturating instead of wrapping, from the same formulas the allocations use
 * (trainer_init, model_ws_alloc_f, batch_alloc, corpus_load); tests/test_memplan.c checks
 * them against what the allocator actually hands out. */
#ifndef TIMIREC_MEMPLAN_H
#define TIMIREC_MEMPLAN_H

#include <stddef.h>
#include <stdint.h>

#include "timirec/corpus.h"
#include "timirec/model.h"
#include "timirec/trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint64_t process;    /* resident besides the dataset, as the caller measured it: the
                            program, its libraries (cuBLAS, OpenBLAS) and runtimes, and what a
                            first load's parse left in the allocator's pools */
    uint64_t params;     /* parameters, gradients, Adam m and v: 4 x #params x 4 bytes;
                            LazyAdam: + 8 bytes per item-table row (its step count) */
    uint64_t workspace;  /* the model workspace for max(batch, eval batch) x history x candidates */
    uint64_t eval_all;   /* test_all: the blocked full-ranking pass (topk_cpu_bytes), the
                            targets, and with eval_users the sample's marks and sort keys */
    uint64_t batches;    /* batch buffers (history, positions, mask, candidates) */
    uint64_t sampler;    /* negatives, epoch order, eval ranks, and the shuffle's sort buffers */
    uint64_t corpus;     /* the loaded dataset: its arrays, or the whole mapped cache file */
    uint64_t total;
} mem_plan_t;

/* a * b, or UINT64_MAX when that overflows (and for any factor already UINT64_MAX). */
uint64_t memplan_mul(uint64_t a, uint64_t b);
/* a + b, saturating the same way. */
uint64_t memplan_add(uint64_t a, uint64_t b);

/* Bytes of model_ws_alloc_f(ws, lay, max_B, max_L, max_C), including the attention's
 * per-thread scratch for `threads` threads. */
uint64_t memplan_model_ws_bytes(const model_layout_t *lay, int64_t max_B, int64_t max_L,
                                int64_t max_C, int threads);
/* Bytes of batch_alloc(b, max_B, max_L, max_C). */
uint64_t memplan_batch_bytes(int64_t max_B, int64_t max_L, int64_t max_C);
/* Bytes a loaded corpus holds: its arrays, or, mapped from the cache (c->map), the whole
 * file, which the mapping makes resident (MAP_POPULATE) and keeps so. */
uint64_t memplan_corpus_bytes(const corpus_t *c);

/* The whole run: `process` bytes resident besides the dataset (memplan_resident_bytes
 * around the load), the corpus, trainer_init(t, c, cfg, opts) with lay = the
 * layout it builds, the epoch's shuffle, and the test_all evaluation buffers when test_all.
 * The parts are summed although the shuffle's and the evaluation's temporaries never live
 * together, and calloc'd pages LazyAdam never touches count: an upper bound of the peak. */
void memplan_run(const model_layout_t *lay, const corpus_t *c, const train_opts_t *opts,
                 int test_all, int threads, uint64_t process, mem_plan_t *plan);

/* This process's resident memory now (/proc/self/statm), 0 when unknown. */
uint64_t memplan_resident_bytes(void);

/* Memory this process may use: physical memory (sysconf), or a smaller cgroup limit
 * (/sys/fs/cgroup/memory.max) when one is set. 0 when unknown. */
uint64_t memplan_machine_bytes(void);

/* "1.5 GiB", "320.0 MiB", "12 bytes", "more than 16 EiB" (saturated). Returns out. */
const char *memplan_format(uint64_t bytes, char *out, size_t outlen);

#ifdef __cplusplus
}
#endif
#endif
