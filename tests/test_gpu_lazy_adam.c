/* GPU-vs-CPU parity of LazyAdam (model.h adam_step_lazy against gpu_adam_update_lazy and the
 * CUDA trainer), on random inputs:
 *   1. four steps on a finetune layout from random parameters, moments and gradients (random
 *      on untouched rows too), random batches with repeated ids: the per-row step counts equal
 *      exactly, rows no batch touched keep their bits on the device, parameters and moments
 *      within 1e-6 normalised (the device may fuse multiply-adds, as in test_gpu_adam). A
 *      second layout with odd sizes puts the lazy tables' ends inside the dense kernel's
 *      groups of four, which then skips part of a group; a third with tables larger than the
 *      dense kernel's grid makes its threads jump over them.
 *   2. the trainer with LazyAdam on a tiny corpus, one epoch of each stage, on the CPU and on
 *      the CUDA backend in its three epoch modes (per step, staged, device-resident: pretrain
 *      replays CUDA graphs there): the same per-row counts everywhere, losses within 1e-4
 *      relative of the CPU's, and the three GPU modes the same bits.
 * SKIP without CUDA or a GPU (test_emu_lazy_adam: the host emulation). */
#include "test_util.h"

#ifndef TIMIREC_CUDA
int main(void) {
    printf("SKIP: built without CUDA (no nvcc)\n");
    return TU_SKIP;
}
#else
#include "gpu_test_util.h"
#include "tiny_corpus.h"
#include "timirec/backend.h"
#include "timirec/cpu_ops.h"
#include "timirec/gpu_data.h"
#include "timirec/trainer.h"

/* B x L histories (lengths 1..L, right padded with 0) and B x C candidates, ids drawn from the
 * first n_draw items (so that ids repeat); ids (T) the histories' non-padding items. */
static int64_t random_batch(uint32_t tag, int B, int L, int C, int n_draw, int32_t *hist,
                            int32_t *pos, int32_t *len, int32_t *cand, int32_t *ids) {
    int64_t T = 0;
    for (int b = 0; b < B; b++) {
        len[b] = 1 + (int)(rng_u32(5, RNG_TEST, tag, (uint64_t)b, 1) % (uint32_t)L);
        for (int l = 0; l < L; l++) {
            const int32_t id = 1 + (int32_t)(rng_u32(5, RNG_TEST, tag, (uint64_t)(b * L + l), 2) %
                                             (uint32_t)(n_draw - 1));
            hist[b * L + l] = l < len[b] ? id : 0;
            pos[b * L + l] = l < len[b] ? len[b] - l : 0;
            if (l < len[b]) ids[T++] = id;
        }
        for (int c = 0; c < C; c++)
            cand[b * C + c] = (int32_t)(rng_u32(5, RNG_TEST, tag, (uint64_t)(b * C + c), 3) %
                                        (uint32_t)n_draw);
    }
    return T;
}

static void run_ops(gpu_ctx_t *ctx, model_config_t cfg) {
    model_layout_t lay;
    model_layout_build(&cfg, &lay);
    const int64_t n = lay.total, n_rows = adam_lazy_rows(&lay);
    printf("layout: emb %d, N %d: %lld elements, %lld lazy rows\n", cfg.emb_size, cfg.n_items,
           (long long)n, (long long)n_rows);
    float *p = gt_rand(n, 1, -1, 1), *m = gt_rand(n, 2, -0.1f, 0.1f), *v = gt_rand(n, 3, 0, 0.01f);
    float *p0 = (float *)malloc((size_t)n * sizeof(float));
    memcpy(p0, p, (size_t)n * sizeof(float));
    float *d_p = gt_up(p, n), *d_m = gt_up(m, n), *d_v = gt_up(v, n);
    int64_t *rows = (int64_t *)calloc((size_t)n_rows, sizeof(int64_t));
    int64_t *got = (int64_t *)calloc((size_t)n_rows, sizeof(int64_t));
    gpu_lazy_adam_t z;
    gpu_lazy_adam_init(&z, &lay);
    adam_t cpu, gpu;
    adam_init(&cpu, 1e-2, 0.1);
    adam_init(&gpu, 1e-2, 0.1);
    enum { B = 6, L = 5, C = 3 };
    int32_t hist[B * L], pos[B * L], len[B], cand[B * C], ids[B * L];
    const int n_draw = cfg.n_items / 2; /* the upper half is never touched */
    for (int step = 0; step < 4; step++) {
        const int64_t T = random_batch(20 + (uint32_t)step, B, L, C, n_draw, hist, pos, len, cand, ids);
        const model_batch_t mb = {B, L, C, hist, pos, len, cand, 0, 0};
        float *g = gt_rand(n, 10 + (uint32_t)step, -1, 1), *d_g = gt_up(g, n);
        int32_t *d_hist = gt_upi(hist, B * L), *d_cand = gt_upi(cand, B * C);
        int32_t *d_ids = gt_upi(ids, T);
        adam_step_lazy(&cpu, &lay, &mb, p, g, m, v, rows);
        gpu_lazy_adam_reserve(&z, &gpu, gpu.step + 1);
        const gpu_lazy_batch_t lb = {&z, d_hist, d_cand, d_ids, B * L, B * C, T};
        gpu_adam_update_lazy(ctx, &gpu, &lay, &lb, d_p, d_g, d_m, d_v);
        printf("step %d (%lld packed rows)\n", step + 1, (long long)T);
        CHECK(gpu.step == cpu.step, "step counter %lld vs %lld", (long long)gpu.step,
              (long long)cpu.step);
        gpu_to_host(got, z.row_step, (size_t)n_rows * sizeof(int64_t));
        CHECK(memcmp(got, rows, (size_t)n_rows * sizeof(int64_t)) == 0,
              "per-row step counts differ from the CPU's");
        gt_compare("LazyAdam parameters", d_p, p, n, 1e-6);
        gt_compare("LazyAdam first moments", d_m, m, n, 1e-6);
        gt_compare("LazyAdam second moments", d_v, v, n, 1e-6);
        free(g);
        gpu_free(d_g), gpu_free(d_hist), gpu_free(d_cand), gpu_free(d_ids);
    }
    /* Rows no batch touched (the upper half of both tables) keep their bits on the device. */
    float *h = (float *)malloc((size_t)n * sizeof(float));
    gpu_to_host(h, d_p, (size_t)n * sizeof(float));
    int lazy[2];
    const int n_lazy = adam_lazy_tensors(&lay, lazy);
    int64_t base = 0, untouched = 0;
    for (int k = 0; k < n_lazy; k++) {
        const param_t *t = &lay.t[lazy[k]];
        for (int64_t r = n_draw; r < t->rows; r++) {
            const int64_t off = t->offset + r * t->cols;
            CHECK(rows[base + r] == 0 && memcmp(h + off, p0 + off, (size_t)t->cols * sizeof(float)) == 0,
                  "%s row %lld: untouched, yet changed on the device", t->name, (long long)r);
            untouched++;
        }
        base += t->rows;
    }
    CHECK(untouched > 0, "no untouched row checked");
    free(h), free(p), free(p0), free(m), free(v), free(rows), free(got);
    gpu_free(d_p), gpu_free(d_m), gpu_free(d_v);
    gpu_lazy_adam_free(&z);
}

/* One epoch of stage with LazyAdam: the trainer's final parameters, counts and loss. */
typedef struct {
    float *params;
    int64_t *rows;
    int64_t n, n_rows;
    double loss;
} result_t;

static result_t train_one(const corpus_t *c, int stage, int use_gpu, const char *mode) {
    if (mode) setenv("TIMIREC_GPU_EPOCH", mode, 1);
    model_config_t cfg = {.stage = stage, .emb_size = 8, .attn_size = 4, .K = 2, .add_pos = 1,
                          .add_trm = 1, .n_layers = 2, .temp = 1, .dropout = 0.5};
    train_opts_t o;
    train_opts_default(&o);
    o.batch_size = 16;
    o.history_max = 6;
    o.l2 = 1e-4;
    o.seed = 7;
    o.lazy_adam = 1;
    o.use_gpu = use_gpu;
    trainer_t t;
    char err[1024];
    if (trainer_init(&t, c, &cfg, &o, err, sizeof err)) {
        fprintf(stderr, "trainer_init: %s\n", err);
        exit(1);
    }
    CHECK(!use_gpu || strncmp(t.backend, "CUDA", 4) == 0, "not on the CUDA backend: %s", t.backend);
    int64_t samples = 0;
    result_t r;
    r.loss = trainer_epoch(&t, c, 0, &samples, err, sizeof err);
    CHECK(r.loss >= 0, "epoch: %s", err);
    r.n = t.lay.total;
    r.n_rows = adam_lazy_rows(&t.lay);
    r.params = (float *)malloc((size_t)r.n * sizeof(float));
    r.rows = (int64_t *)malloc((size_t)r.n_rows * sizeof(int64_t));
    memcpy(r.params, t.params, (size_t)r.n * sizeof(float));
    memcpy(r.rows, t.row_step, (size_t)r.n_rows * sizeof(int64_t));
    CHECK(t.adam.step > 1, "Adam steps %lld", (long long)t.adam.step);
    if (use_gpu && stage == STAGE_PRETRAIN && strcmp(mode, "device") == 0) {
        const char *off = gpu_model_graphs_off_why(trainer_gpu_model(&t));
        CHECK(!off, "CUDA graphs were off: %s", off ? off : "");
    }
    int64_t lagging = 0;
    for (int64_t i = 0; i < r.n_rows; i++) lagging += r.rows[i] < t.adam.step;
    CHECK(lagging > 0, "every row touched at every step: the comparison proves little");
    trainer_free(&t);
    unsetenv("TIMIREC_GPU_EPOCH");
    return r;
}

static void run_trainer(const corpus_t *c, int stage) {
    result_t cpu = train_one(c, stage, 0, NULL);
    static const char *modes[3] = {"0", "staged", "device"};
    result_t gpu[3];
    for (int k = 0; k < 3; k++) {
        gpu[k] = train_one(c, stage, 1, modes[k]);
        printf("stage %d, epoch mode %s: loss %.9g (CPU %.9g)\n", stage, modes[k], gpu[k].loss,
               cpu.loss);
        CHECK(memcmp(gpu[k].rows, cpu.rows, (size_t)cpu.n_rows * sizeof(int64_t)) == 0,
              "stage %d, mode %s: per-row step counts differ from the CPU's", stage, modes[k]);
        CHECK(tu_close(gpu[k].loss, cpu.loss, 1e-4 * fabs(cpu.loss)), "stage %d, mode %s: loss "
              "%.9g, CPU %.9g", stage, modes[k], gpu[k].loss, cpu.loss);
        gt_compare_host("trainer parameters", gpu[k].params, cpu.params, cpu.n, 1e-4);
        CHECK(k == 0 || memcmp(gpu[k].params, gpu[0].params, (size_t)cpu.n * sizeof(float)) == 0,
              "stage %d: epoch mode %s differs from the per-step loop", stage, modes[k]);
    }
    for (int k = 0; k < 3; k++) free(gpu[k].params), free(gpu[k].rows);
    free(cpu.params), free(cpu.rows);
}

int main(void) {
    gpu_ctx_t *ctx = gt_start("test_gpu_lazy_adam");
    model_config_t cfg = {.stage = STAGE_FINETUNE, .n_items = 301, .emb_size = 16, .attn_size = 8,
                          .K = 2, .history_max = 20, .add_pos = 1, .add_trm = 1, .n_layers = 2,
                          .temp = 0.5, .dropout = 0.5};
    run_ops(ctx, cfg);
    cfg.n_items = 103, cfg.emb_size = 17, cfg.K = 3, cfg.attn_size = 5; /* odd sizes */
    run_ops(ctx, cfg);
    cfg.stage = STAGE_PRETRAIN;
    run_ops(ctx, cfg);
    /* Large tables: more float4 groups than the dense kernel has threads (2048 x 256), so its
     * threads jump over the lazy tables and must land on the tensors between and after them. */
    cfg.stage = STAGE_FINETUNE, cfg.n_items = 40000, cfg.emb_size = 36, cfg.attn_size = 5;
    run_ops(ctx, cfg);
    gpu_ctx_free(ctx);
    gpu_debug_sync(0); /* the epoch driver replays CUDA graphs only without it */
    const char *dir = du_tempdir("gpu_lazy_adam");
    corpus_t c;
    tc_make_corpus(dir, 40, 60, 10, 6, 3, &c);
    run_trainer(&c, STAGE_PRETRAIN);
    run_trainer(&c, STAGE_FINETUNE);
    corpus_free(&c);
    du_rm_rf(dir);
    return gt_finish("test_gpu_lazy_adam");
}
#endif
