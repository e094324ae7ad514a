/* Memory estimate of a training run (memplan.h). The model workspace comes from the activation
 * table (model.h) as model_ws_alloc_f carves it; the other formulas restate the allocations of
 * trainer_init, batch_alloc and corpus_load; tests/test_memplan.c holds them to the
 * allocator's count. */
#include "timirec/memplan.h"
#include "timirec/topk.h"

#include "timirec/sampler.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

uint64_t memplan_mul(uint64_t a, uint64_t b) {
    if (a == UINT64_MAX || b == UINT64_MAX) return UINT64_MAX;
    if (a != 0 && b > UINT64_MAX / a) return UINT64_MAX;
    return a * b;
}

uint64_t memplan_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

/* n elements of `size` bytes; negative counts count as 0. */
static uint64_t bytes(int64_t n, uint64_t size) { return n > 0 ? memplan_mul((uint64_t)n, size) : 0; }
#define MUL memplan_mul
#define ADD memplan_add

uint64_t memplan_model_ws_bytes(const model_layout_t *lay, int64_t max_B, int64_t max_L,
                                int64_t max_C, int threads) {
    const model_config_t *cfg = &lay->cfg;
    if (max_L < 1) max_L = 1;
    /* model_ws_alloc_f: one block per part of the activation table (act_carve). */
    act_table_t t;
    model_acts_build(lay, max_B, max_L, max_C > 0 ? max_C : 0, &t);
    uint64_t total = 0;
    for (int g = ACT_EXTRACTOR; g <= ACT_HEADS; g++)
        total = ADD(total, model_acts_block(&t, ACT_CPU, 1u << g, sizeof(float), ACT_ALIGN, NULL));
    /* ext_attn_forward / _backward: per thread (d x Lp) + (L x Lp), Lp = L rounded up to 16. */
    if (cfg->add_trm) {
        const uint64_t L = (uint64_t)max_L, d = (uint64_t)cfg->emb_size, Lp = (L + 15) / 16 * 16;
        const uint64_t th = (uint64_t)(threads < 1 ? 1 : threads);
        total = ADD(total, MUL(MUL(th, ADD(MUL(d, Lp), MUL(L, Lp))), sizeof(float)));
    }
    return total;
}

uint64_t memplan_batch_bytes(int64_t max_B, int64_t max_L, int64_t max_C) {
    if (max_L < 1) max_L = 1;
    uint64_t bl = MUL((uint64_t)max_B, (uint64_t)max_L);
    /* user length (B), hist pos mask (B L), cand (B C): 4 bytes each. */
    return MUL(4, ADD(ADD(MUL(2, (uint64_t)max_B), MUL(3, bl)), MUL((uint64_t)max_B, (uint64_t)max_C)));
}

uint64_t memplan_corpus_bytes(const corpus_t *c) {
    if (c->map) return c->map_bytes; /* the arrays, aligned, with the header: all resident */
    uint64_t b = 0, rows = 0;
    for (int p = 0; p < N_PHASES; p++) {
        const corpus_phase_t *ph = &c->phase[p];
        /* user item position (4), time (8), negatives (4 each), instance rows (8) */
        b = ADD(b, bytes(ph->n_rows, 20));
        b = ADD(b, MUL(bytes(ph->n_rows, 4), (uint64_t)(ph->n_neg > 0 ? ph->n_neg : 0)));
        b = ADD(b, bytes(ph->n_inst + 1, 8));
        rows = ADD(rows, (uint64_t)(ph->n_rows > 0 ? ph->n_rows : 0));
    }
    const int64_t users = (int64_t)c->n_users + 1;
    b = ADD(b, bytes(3 * users, 8));                  /* seq_off, train_off, all_off */
    b = ADD(b, MUL(ADD(rows, 1), 4));                 /* seq_item */
    if (c->train_off) b = ADD(b, bytes(c->train_off[c->n_users] + 1, 4));
    if (c->all_off) b = ADD(b, bytes(c->all_off[c->n_users] + 1, 4));
    return b;
}

void memplan_run(const model_layout_t *lay, const corpus_t *c, const train_opts_t *o,
                 int test_all, int threads, uint64_t process, mem_plan_t *plan) {
    /* The shapes trainer_init allocates for. */
    int64_t max_L = sampler_max_history(c, o->history_max);
    if (max_L < 1) max_L = 1;
    int64_t max_B = o->batch_size > o->eval_batch_size ? o->batch_size : o->eval_batch_size;
    int64_t max_C = 1 + (int64_t)o->num_neg, max_eval = 1;
    for (int p = PHASE_DEV; p <= PHASE_TEST; p++) {
        if (1 + (int64_t)c->phase[p].n_neg > max_C) max_C = 1 + (int64_t)c->phase[p].n_neg;
        if (c->phase[p].n_inst > max_eval) max_eval = c->phase[p].n_inst;
    }
    const int64_t n_train = c->phase[PHASE_TRAIN].n_inst;
    plan->params = MUL(MUL(4, (uint64_t)lay->total), sizeof(float));
    if (o->lazy_adam) /* LazyAdam's per-row step counts and a step's touched rows (int64) */
        plan->params = ADD(plan->params, ADD(bytes(adam_lazy_rows(lay), sizeof(int64_t)),
                                             bytes(adam_lazy_cap(o->batch_size, max_L,
                                                                 1 + (int64_t)o->num_neg),
                                                   sizeof(int64_t))));
    plan->workspace = memplan_model_ws_bytes(lay, max_B, max_L, max_C, threads);
    plan->batches = memplan_batch_bytes(max_B, max_L, max_C);
    plan->eval_all = 0;
    if (test_all)
        plan->eval_all = ADD(topk_cpu_bytes(o->eval_batch_size, lay->cfg.K, lay->cfg.emb_size, 1,
                                            threads),
                             bytes(o->eval_batch_size, 4)); /* + the targets */
    /* sampler_eval_users: a mark per user, then a (key, user) pair of 16 bytes per user. */
    if (test_all && o->eval_users > 0)
        plan->eval_all = ADD(plan->eval_all, bytes(c->n_users, 1 + 16));
    /* train_neg (n_train x num_neg int32), order (int64), eval index and ranks (int64 each),
     * and the shuffle's 16-bit bucket per instance plus its (thread, 2^16) counters. */
    plan->sampler = ADD(MUL(bytes(n_train, 4), (uint64_t)o->num_neg), 4);
    plan->sampler = ADD(plan->sampler, ADD(bytes(n_train + 1, 8), bytes(2 * max_eval, 8)));
    plan->sampler = ADD(plan->sampler, ADD(bytes(n_train, 2), ((uint64_t)(threads < 1 ? 1 : threads) + 1) * 8 << 16));
    plan->corpus = memplan_corpus_bytes(c);
    plan->process = process;
    plan->total = ADD(ADD(ADD(plan->params, plan->workspace), ADD(plan->eval_all, plan->batches)),
                      ADD(ADD(plan->sampler, plan->corpus), plan->process));
}

uint64_t memplan_resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long long size, resident;
    int ok = fscanf(f, "%llu %llu", &size, &resident) == 2;
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return ok && page > 0 ? MUL(resident, (uint64_t)page) : 0;
}

uint64_t memplan_machine_bytes(void) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    uint64_t phys = pages > 0 && page > 0 ? MUL((uint64_t)pages, (uint64_t)page) : 0;
    /* A container's limit (cgroup v2) is what the kernel enforces: "max" means none. */
    FILE *f = fopen("/sys/fs/cgroup/memory.max", "r");
    if (f) {
        unsigned long long lim;
        if (fscanf(f, "%llu", &lim) == 1 && lim > 0 && (phys == 0 || lim < phys)) phys = lim;
        fclose(f);
    }
    return phys;
}

const char *memplan_format(uint64_t b, char *out, size_t outlen) {
    static const char *unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (b == UINT64_MAX) {
        snprintf(out, outlen, "more than 16 EiB");
        return out;
    }
    double v = (double)b;
    int u = 0;
    while (v >= 1024 && u < 6) v /= 1024, u++;
    if (u == 0) snprintf(out, outlen, "%llu bytes", (unsigned long long)b);
    else snprintf(out, outlen, "%.1f %s", v, unit[u]);
    return out;
}
