/* The memory estimate (memplan.h) against what the allocator hands out (glibc mallinfo2):
 * the model workspace of every configuration family, the batch buffers, trainer_init as a
 * whole and the loaded corpus (parsed, and mapped from the cache); what --eval_users and the
 * process's own start add; saturating arithmetic; formatting. Under a sanitizer, whose
 * allocator mallinfo2 does not see, the cross-checks print SKIP lines and the rest still runs. */
#include "test_util.h"
#include "tiny_corpus.h"
#include "timirec/memplan.h"
#include "timirec/sampler.h"
#include "timirec/topk.h"
#include "timirec/trainer.h"

#include <malloc.h>
#include <omp.h>
#include <unistd.h>

static int mallinfo_works = 1;

static uint64_t in_use(void) {
    struct mallinfo2 m = mallinfo2();
    return (uint64_t)m.uordblks + (uint64_t)m.hblkhd;
}

/* got within [want, want * 1.02 + slack]: the estimate must not undercount; the allocator adds
 * up to ~32 bytes of headers and alignment per block. */
static void check_close(const char *what, uint64_t got, uint64_t want, uint64_t slack) {
    if (!mallinfo_works) return;
    CHECK(got + 64 >= want && got <= want + want / 50 + slack,
          "%s: allocated %llu bytes, estimated %llu", what, (unsigned long long)got,
          (unsigned long long)want);
}

static void test_ws(int stage, int add_trm, int n_layers, int B, int L, int C) {
    model_config_t cfg = {.stage = stage, .n_items = 500, .emb_size = 32, .attn_size = 8, .K = 4,
                          .history_max = 50, .add_pos = 1, .add_trm = add_trm,
                          .n_layers = n_layers, .temp = 1, .dropout = 0.5};
    model_layout_t lay;
    model_layout_build(&cfg, &lay);
    uint64_t before = in_use();
    model_ws_t_f ws;
    model_ws_alloc_f(&ws, &lay, B, L, C);
    uint64_t got = in_use() - before;
    /* The attention's per-thread scratch lives only during a forward/backward: not counted. */
    uint64_t want = memplan_model_ws_bytes(&lay, B, L, C, 1);
    if (add_trm) {
        uint64_t Lp = ((uint64_t)L + 15) / 16 * 16;
        want -= ((uint64_t)32 * Lp + (uint64_t)L * Lp) * 4;
    }
    char what[128];
    snprintf(what, sizeof what, "workspace stage %d trm %d layers %d B %d L %d C %d", stage,
             add_trm, n_layers, B, L, C);
    check_close(what, got, want, 40 * 32);
    model_ws_free_f(&ws);
    before = in_use();
    batch_t b;
    batch_alloc(&b, B, L, C);
    check_close("batch_alloc", in_use() - before, memplan_batch_bytes(B, L, C), 6 * 32);
    batch_free(&b);
}

/* The same corpus mapped from the cache: the whole file counts (MAP_POPULATE makes it
 * resident), which is the arrays plus the header and alignment, and it is resident. */
static void test_mapped(const char *dir, const corpus_t *parsed) {
    corpus_opts_t co = {.path = dir, .dataset = "tiny", .sep = '\t', .cache = CORPUS_CACHE_ON};
    char err[1024];
    corpus_t w, m;
    CHECK(corpus_load(&co, &w, err, sizeof err) == 0 && !w.map, "cache write: %s", err);
    corpus_free(&w);
    const uint64_t before = memplan_resident_bytes();
    CHECK(corpus_load(&co, &m, err, sizeof err) == 0 && m.map, "cache read: %s %s", err,
          m.cache_note);
    const uint64_t after = memplan_resident_bytes();
    if (!m.map) return;
    const uint64_t arrays = memplan_corpus_bytes(parsed), mapped = memplan_corpus_bytes(&m);
    CHECK(mapped == m.map_bytes && mapped >= arrays && mapped <= arrays + 64 * 64 + 4096,
          "mapped corpus: estimated %llu, file %zu, arrays %llu", (unsigned long long)mapped,
          m.map_bytes, (unsigned long long)arrays);
    CHECK(before > ((uint64_t)1 << 20), "resident %llu", (unsigned long long)before);
    CHECK(after >= before + mapped / 2, "mapping %llu bytes: resident %llu -> %llu",
          (unsigned long long)mapped, (unsigned long long)before, (unsigned long long)after);
    corpus_free(&m);
}

int main(int argc, char **argv) {
    (void)argc;
    /* Freed small blocks wait in glibc's per-thread cache, which mallinfo2 counts as in use:
     * run again without that cache, so that the counts are exact. */
    if (!getenv("TIMIREC_MEMPLAN_REEXEC")) {
        setenv("TIMIREC_MEMPLAN_REEXEC", "1", 1);
        setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0", 1);
        execv("/proc/self/exe", argv);
        perror("execv /proc/self/exe (going on with the cache)");
    }
    /* mallinfo2 must see a plain malloc (not so under ASan). */
    uint64_t m0 = in_use();
    char *volatile probe = malloc(1 << 20); /* volatile: the pair is not optimised away */
    probe[0] = 1;
    mallinfo_works = in_use() - m0 >= (1 << 20);
    free(probe);
    if (!mallinfo_works) printf("SKIP (part): mallinfo2 does not see this allocator; cross-checks off\n");

    CHECK(memplan_mul(3, 5) == 15 && memplan_mul(0, UINT64_MAX) == UINT64_MAX, "mul");
    CHECK(memplan_mul((uint64_t)1 << 40, (uint64_t)1 << 30) == UINT64_MAX, "mul saturates");
    CHECK(memplan_add(UINT64_MAX - 1, 5) == UINT64_MAX && memplan_add(2, 3) == 5, "add");
    char s[64];
    CHECK(strcmp(memplan_format(12, s, sizeof s), "12 bytes") == 0, "%s", s);
    CHECK(strcmp(memplan_format(3 << 20, s, sizeof s), "3.0 MiB") == 0, "%s", s);
    CHECK(strcmp(memplan_format((uint64_t)5 << 40, s, sizeof s), "5.0 TiB") == 0, "%s", s);
    CHECK(strcmp(memplan_format(UINT64_MAX, s, sizeof s), "more than 16 EiB") == 0, "%s", s);
    CHECK(memplan_machine_bytes() > ((uint64_t)64 << 20), "machine memory %llu",
          (unsigned long long)memplan_machine_bytes());

    for (int stage = 0; stage < 2; stage++)
        for (int trm = 0; trm < 2; trm++)
            for (int layers = 1; layers <= (stage ? 3 : 1); layers += 2) {
                test_ws(stage, trm, layers, 64, 20, 101);
                test_ws(stage, trm, layers, 7, 3, 2);
            }

    /* A whole trainer_init and a corpus. */
    const char *dir = du_tempdir("memplan");
    corpus_t c;
    uint64_t before = in_use();
    tc_make_corpus(dir, 200, 300, 30, 50, 5, &c);
    uint64_t corpus_got = in_use() - before;
    /* The loader grows its row arrays by doubling: up to 2x the rows it keeps. */
    if (mallinfo_works)
        CHECK(corpus_got >= memplan_corpus_bytes(&c) * 9 / 10 &&
                  corpus_got <= memplan_corpus_bytes(&c) * 2 + 4096,
              "corpus: allocated %llu, estimated %llu", (unsigned long long)corpus_got,
              (unsigned long long)memplan_corpus_bytes(&c));
    model_config_t cfg = {.stage = STAGE_FINETUNE, .emb_size = 16, .attn_size = 8, .K = 2,
                          .add_pos = 1, .add_trm = 1, .n_layers = 2, .temp = 1, .dropout = 0.5};
    train_opts_t o;
    train_opts_default(&o);
    o.batch_size = 64;
    o.eval_batch_size = 100;
    o.num_neg = 3;
    o.history_max = 20;
    model_config_t full = cfg;
    full.n_items = c.n_items;
    full.history_max = o.history_max;
    model_layout_t lay;
    model_layout_build(&full, &lay);
    mem_plan_t plan;
    memplan_run(&lay, &c, &o, 0, 1, 0, &plan);
    CHECK(plan.total == plan.params + plan.workspace + plan.eval_all + plan.batches + plan.sampler +
                           plan.corpus && plan.eval_all == 0 && plan.process == 0, "total");
    /* What the process held before the data (libraries, runtimes) is part of the total. */
    mem_plan_t started;
    memplan_run(&lay, &c, &o, 0, 1, (uint64_t)200 << 20, &started);
    CHECK(started.process == (uint64_t)200 << 20 && started.total == plan.total + started.process,
          "process: %llu of %llu", (unsigned long long)started.process,
          (unsigned long long)started.total);
    char err[1024];
    trainer_t t;
    omp_set_num_threads(1);
    before = in_use();
    CHECK(trainer_init(&t, &c, &cfg, &o, err, sizeof err) == 0, "%s", err);
    uint64_t got = in_use() - before;
    /* Allocated by trainer_init: all but the shuffle's temporaries and the attention scratch. */
    uint64_t n_train = (uint64_t)c.phase[PHASE_TRAIN].n_inst;
    uint64_t Lp = (20 + 15) / 16 * 16;
    uint64_t want = plan.params + plan.workspace + plan.batches + plan.sampler -
                    (n_train * 2 + ((uint64_t)2 * 8 << 16)) - (16 * Lp + 20 * Lp) * 4;
    check_close("trainer_init", got, want, 80 * 32);
    trainer_free(&t);
    /* LazyAdam adds its per-row step counts, 8 bytes a row of both item tables, and a
     * training step's touched-row list; trainer_init allocates them. */
    train_opts_t ol = o;
    ol.lazy_adam = 1;
    mem_plan_t lazy;
    memplan_run(&lay, &c, &ol, 0, 1, 0, &lazy);
    const uint64_t rows = (uint64_t)c.n_items + (uint64_t)c.n_items + 1;
    const uint64_t listed = (uint64_t)adam_lazy_cap(64, sampler_max_history(&c, 20), 4); /* a step's */
    CHECK(adam_lazy_rows(&lay) == (int64_t)rows &&
              lazy.params == plan.params + 8 * (rows + listed) &&
              lazy.total == plan.total + 8 * (rows + listed),
          "LazyAdam: params %llu, Adam's %llu, %llu rows", (unsigned long long)lazy.params,
          (unsigned long long)plan.params, (unsigned long long)rows);
    before = in_use();
    CHECK(trainer_init(&t, &c, &cfg, &ol, err, sizeof err) == 0, "%s", err);
    got = in_use() - before;
    check_close("trainer_init (LazyAdam)", got, want + 8 * (rows + listed), 80 * 32);
    trainer_free(&t);
    /* test_all adds the blocked full-ranking pass: per thread at least a packed tile of 512
     * items, and nothing of catalog size (the item table is read in place). */
    mem_plan_t all;
    memplan_run(&lay, &c, &o, 1, 1, 0, &all);
    CHECK(all.eval_all > (uint64_t)512 * (uint64_t)lay.cfg.emb_size * 4 &&
              all.eval_all == topk_cpu_bytes(o.eval_batch_size, lay.cfg.K, lay.cfg.emb_size, 1, 1) +
                                  4 * (uint64_t)o.eval_batch_size,
          "eval_all %llu", (unsigned long long)all.eval_all);
    /* --eval_users adds sampler_eval_users' buffers: a mark per user and a 16-byte sort key
     * per user with an instance (at most every user). */
    train_opts_t oe = o;
    oe.eval_users = 7;
    mem_plan_t sample;
    memplan_run(&lay, &c, &oe, 1, 1, 0, &sample);
    CHECK(sample.eval_all == all.eval_all + 17 * (uint64_t)c.n_users &&
              sample.total == all.total + 17 * (uint64_t)c.n_users,
          "eval_users: %llu, without %llu, %d users", (unsigned long long)sample.eval_all,
          (unsigned long long)all.eval_all, c.n_users);
    memplan_run(&lay, &c, &oe, 0, 1, 0, &sample); /* sampled negatives: no user sample */
    CHECK(sample.total == plan.total, "eval_users without test_all");
    test_mapped(dir, &c);
    /* Sizes that overflow 64 bits saturate instead of wrapping to something small. */
    CHECK(memplan_model_ws_bytes(&lay, (int64_t)1 << 40, (int64_t)1 << 20, (int64_t)1 << 20, 2) ==
              UINT64_MAX, "huge workspace did not saturate");
    corpus_free(&c);
    du_rm_rf(dir);
    return tu_finish("test_memplan");
}
