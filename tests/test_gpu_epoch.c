/* The CUDA backend's epoch driver (gpu_train_epoch, gpu_eval_phase through the trainer)
 * against the per-step GPU path (TIMIREC_GPU_EPOCH=0: host batches, one synchronisation per
 * step), for both stages on a small synthetic corpus:
 * - the epoch losses, the parameters and both Adam moments after two epochs are identical
 *   bit for bit (same batches, same kernels on the same stream with the same cuBLAS
 *   workspace, one Adam kernel; the loss summed on the device in the host's order), and so
 *   are the dev ranks and metrics;
 * - pretrain with CUDA graphs (one captured step per batch shape replayed, its batch index and
 *   Adam scalars read from the device) and without (TIMIREC_GPU_GRAPHS=0) end with the same
 *   parameters: identical in the emulation (replays run the same host code); on a GPU a
 *   replay runs cuBLAS on another stream with another workspace, which cuBLAS does not promise
 *   to reproduce bit for bit, so there they agree within Adam's step (gt_same_params), and
 *   every other comparison of this test runs with graphs off on a GPU, where it is exact;
 * - host-built batches staged through pinned memory (TIMIREC_GPU_EPOCH=staged) give the same
 *   parameters and moments after two epochs;
 * - an epoch stopped after 3 batches (the stop flag) and resumed from its cursor ends with the
 *   same loss sum, parameters and step count as one run straight through;
 * - a NaN planted in a parameter, and a learning rate that overflows the parameters a few
 *   batches in (later batches already queued on the device): both paths stop at the same
 *   batch with the same message, leaving the same parameters (the bad step not applied).
 * SKIP without CUDA or a GPU (test_emu_epoch: emulated). */
#include "test_util.h"

#ifndef TIMIREC_CUDA
int main(void) {
    printf("SKIP: built without CUDA (no nvcc)\n");
    return TU_SKIP;
}
#else
#include "data_util.h"
#include "gpu_test_util.h"
#include "timirec/backend.h"
#include "timirec/prepare.h"
#include "timirec/trainer.h"

/* Graphs for the device epochs of this test: on in the emulation (exact there), off on a GPU
 * (see the header); the graphs block trains the other way. */
static int graphs_default;
static void use_graphs(int on) {
    if (on) unsetenv("TIMIREC_GPU_GRAPHS");
    else setenv("TIMIREC_GPU_GRAPHS", "0", 1);
}

static int same_floats(const char *what, const float *a, const float *b, int64_t n) {
    int64_t diff = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
            if (first < 0) first = i;
            diff++;
        }
    CHECK(diff == 0, "%s: %lld of %lld differ (first at %lld: %.9g vs %.9g)", what,
          (long long)diff, (long long)n, (long long)first, first >= 0 ? a[first] : 0.0,
          first >= 0 ? b[first] : 0.0);
    return diff == 0;
}

/* 1: the epoch driver on the device-resident corpus; 0: the per-step path. */
static void use_device_epoch(int on) { setenv("TIMIREC_GPU_EPOCH", on ? "1" : "0", 1); }

static volatile sig_atomic_t stop_flag;

/* Raise the stop flag after `after` batches (progress callback). */
static int64_t stop_after;
static void progress(void *ctx, int64_t done, int64_t total) {
    trainer_t *t = ctx;
    (void)done;
    (void)total;
    if (stop_after > 0 && t->batches_run >= stop_after) stop_flag = 1;
}

int main(void) {
    gpu_ctx_t *probe = gt_start("test_gpu_epoch");
    gpu_ctx_free(probe);
    gpu_debug_sync(0);
    graphs_default = gpu_is_emulated();
    use_graphs(graphs_default);
    const int emu = (gpu_is_emulated() && !getenv("TMR_EMU_FULL")) || getenv("TMR_SMALL_SHAPES");
    const char *dir = du_tempdir("gpu_epoch");
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/toy", dir);
    synth_opts_t so;
    synth_defaults(&so);
    so.n_users = emu ? 40 : 1000;
    so.n_items = emu ? 50 : 500;
    so.seq_len = emu ? 10 : 30; /* emulated: ~7 batches an epoch, enough for the stop at 3 */
    so.seed = 7;
    interactions_t x;
    CHECK(synth_generate(&so, &x, err, sizeof err) == 0, "synth: %s", err);
    CHECK(prepare_write(&x, path, 20, 3, err, sizeof err) == 0, "prepare: %s", err);
    interactions_free(&x);
    corpus_t c;
    corpus_opts_t co = {.path = dir, .dataset = "toy", .sep = '\t'};
    if (corpus_load(&co, &c, err, sizeof err)) {
        CHECK(0, "%s", err);
        return tu_finish("test_gpu_epoch");
    }
    metric_spec_t spec;
    metrics_parse("HR,NDCG", "5", &spec, err, sizeof err);
    for (int stage = STAGE_PRETRAIN; stage <= STAGE_FINETUNE; stage++) {
        const char *name = stage == STAGE_PRETRAIN ? "pretrain" : "finetune";
        model_config_t cfg = {.stage = stage, .emb_size = emu ? 16 : 64, .attn_size = 8, .K = 2,
                              .add_pos = 1, .add_trm = 1, .n_layers = stage ? 2 : 1,
                              .temp = stage ? 0.5 : 1, .dropout = 0.5};
        train_opts_t o;
        train_opts_default(&o);
        o.batch_size = emu ? 48 : 256;
        o.eval_batch_size = emu ? 40 : 256;
        o.history_max = 10;
        o.seed = 9;
        o.use_gpu = 1;
        trainer_t dev, step;
        CHECK(trainer_init(&dev, &c, &cfg, &o, err, sizeof err) == 0, "%s", err);
        CHECK(trainer_init(&step, &c, &cfg, &o, err, sizeof err) == 0, "%s", err);
        CHECK(trainer_gpu_model(&dev) && trainer_gpu_model(&step), "%s: no GPU backend: %s", name,
              dev.backend);
        const int64_t total = dev.lay.total;
        for (uint32_t e = 0; e < 2; e++) {
            int64_t n1, n2;
            use_device_epoch(1);
            const double ld = trainer_epoch(&dev, &c, e, &n1, err, sizeof err);
            use_device_epoch(0);
            const double ls = trainer_epoch(&step, &c, e, &n2, err, sizeof err);
            printf("%s epoch %u: loss device driver %.9f, per step %.9f\n", name, e + 1, ld, ls);
            CHECK(isfinite(ld) && memcmp(&ld, &ls, sizeof ld) == 0,
                  "%s epoch %u: loss %.17g vs %.17g", name, e + 1, ld, ls);
            CHECK(dev.step == step.step && dev.adam.step == step.adam.step,
                  "%s: steps %lld/%lld vs %lld/%lld", name, (long long)dev.step,
                  (long long)dev.adam.step, (long long)step.step, (long long)step.adam.step);
            same_floats("parameters", dev.params, step.params, total);
            same_floats("Adam m", dev.adam_m, step.adam_m, total);
            same_floats("Adam v", dev.adam_v, step.adam_v, total);
            CHECK(dev.last_B == step.last_B, "%s: last batch size %d vs %d", name, dev.last_B,
                  step.last_B);
            if (stage == STAGE_FINETUNE) {
                const size_t n = (size_t)o.batch_size * cfg.K;
                float *id = (float *)malloc(4 * n * sizeof(float)), *is = id + 2 * n;
                const int Bd = trainer_last_intents(&dev, id, id + n);
                const int Bs = trainer_last_intents(&step, is, is + n);
                CHECK(Bd == Bs, "%s: last intents of %d vs %d instances", name, Bd, Bs);
                same_floats("last batch's pred_intent", id, is, (int64_t)Bs * cfg.K);
                free(id);
            }
            for (int p = PHASE_DEV; p <= PHASE_TEST; p++) {
                double vd[2], vs[2];
                use_device_epoch(1);
                trainer_evaluate(&dev, &c, p, 0, &spec, vd);
                const int64_t ne = c.phase[p].n_inst;
                int64_t *rd = malloc((size_t)ne * sizeof(int64_t));
                memcpy(rd, dev.ranks, (size_t)ne * sizeof(int64_t));
                use_device_epoch(0);
                trainer_evaluate(&step, &c, p, 0, &spec, vs);
                int64_t diff = 0;
                for (int64_t i = 0; i < ne; i++) diff += rd[i] != step.ranks[i];
                printf("  %s: HR@5 %.4f / %.4f, NDCG@5 %.4f / %.4f, %lld of %lld ranks differ\n",
                       corpus_phase_names[p], vd[0], vs[0], vd[1], vs[1], (long long)diff,
                       (long long)ne);
                CHECK(diff == 0 && vd[0] == vs[0] && vd[1] == vs[1], "%s %s: device ranks differ",
                      name, corpus_phase_names[p]);
                free(rd);
            }
        }

        { /* host-built batches staged through pinned memory: the same, bit for bit */
            trainer_t stg;
            CHECK(trainer_init(&stg, &c, &cfg, &o, err, sizeof err) == 0, "%s", err);
            setenv("TIMIREC_GPU_EPOCH", "staged", 1);
            int64_t n4;
            double l4[2];
            for (uint32_t e = 0; e < 2; e++) l4[e] = trainer_epoch(&stg, &c, e, &n4, err, sizeof err);
            printf("  staged host batches: epoch 2 loss %.9f\n", l4[1]);
            CHECK(isfinite(l4[1]) && stg.step == dev.step, "%s staged: loss %g, step %lld", name,
                  l4[1], (long long)stg.step);
            same_floats("parameters, staged vs device batches", stg.params, dev.params, total);
            same_floats("Adam m, staged vs device batches", stg.adam_m, dev.adam_m, total);
            trainer_free(&stg);
        }
        if (stage == STAGE_PRETRAIN) { /* CUDA graphs the other way from this test's default */
            trainer_t other;
            CHECK(trainer_init(&other, &c, &cfg, &o, err, sizeof err) == 0, "%s", err);
            use_device_epoch(1);
            use_graphs(!graphs_default);
            int64_t n3;
            double l3 = 0;
            for (uint32_t e = 0; e < 2; e++) l3 = trainer_epoch(&other, &c, e, &n3, err, sizeof err);
            use_graphs(graphs_default);
            printf("  graphs %s: epoch 2 loss %.9f\n", graphs_default ? "off" : "on", l3);
            const int exact = gpu_is_emulated();
            gt_same_params("parameters, graphs on vs off", other.params, dev.params, total, exact,
                           o.lr, other.step);
            if (exact) same_floats("Adam v, graphs on vs off", other.adam_v, dev.adam_v, total);
            trainer_free(&other);
        }

        /* Stop after 3 batches and resume, against straight through (from the same state). */
        trainer_t a, b;
        CHECK(trainer_init(&a, &c, &cfg, &o, err, sizeof err) == 0, "%s", err);
        CHECK(trainer_init(&b, &c, &cfg, &o, err, sizeof err) == 0, "%s", err);
        use_device_epoch(1);
        epoch_cursor_t ca = {0, 0, 0, 0}, cb = {0, 0, 0, 0};
        stop_flag = 0;
        stop_after = 3;
        a.stop = &stop_flag;
        a.progress = progress;
        a.progress_ctx = &a;
        int rc = trainer_train_epoch(&a, &c, 0, &ca, err, sizeof err);
        CHECK(rc == TRAIN_INTERRUPTED && ca.batch == 3 && a.step == 3 && a.adam.step == 3,
              "%s: interrupted rc %d at batch %lld, step %lld", name, rc, (long long)ca.batch,
              (long long)a.step);
        stop_flag = 0;
        stop_after = 0;
        rc = trainer_train_epoch(&a, &c, 0, &ca, err, sizeof err);
        CHECK(rc == TRAIN_DONE, "%s: resumed epoch rc %d: %s", name, rc, err);
        rc = trainer_train_epoch(&b, &c, 0, &cb, err, sizeof err);
        CHECK(rc == TRAIN_DONE, "%s: straight epoch rc %d: %s", name, rc, err);
        printf("  stopped after 3 batches and resumed: loss sum %.9f, straight %.9f; steps %lld / %lld\n",
               ca.loss_sum, cb.loss_sum, (long long)a.step, (long long)b.step);
        CHECK(memcmp(&ca.loss_sum, &cb.loss_sum, sizeof ca.loss_sum) == 0 && a.step == b.step &&
                  a.batches_run == b.batches_run,
              "%s: resumed loss sum %.17g vs %.17g", name, ca.loss_sum, cb.loss_sum);
        same_floats("parameters after stop and resume", a.params, b.params, total);

        /* A NaN in W1's first element: both paths stop at the same batch, same message. */
        const int64_t w1 = model_offset(&a.lay, P_EXT_W1);
        char err_d[1024], err_s[1024];
        a.params[w1] = NAN;
        b.params[w1] = NAN;
        epoch_cursor_t na = {0, 0, 0, 0}, nb = {0, 0, 0, 0};
        use_device_epoch(1);
        const int rd = trainer_train_epoch(&a, &c, 1, &na, err_d, sizeof err_d);
        use_device_epoch(0);
        const int rs = trainer_train_epoch(&b, &c, 1, &nb, err_s, sizeof err_s);
        printf("  NaN planted: device driver rc %d \"%.120s\"\n", rd, err_d);
        CHECK(rd == TRAIN_NONFINITE && rs == TRAIN_NONFINITE && na.batch == nb.batch &&
                  strcmp(err_d, err_s) == 0 && a.step == b.step && a.adam.step == b.adam.step,
              "%s: NaN: rc %d/%d, batch %lld/%lld, \"%s\" vs \"%s\"", name, rd, rs,
              (long long)na.batch, (long long)nb.batch, err_d, err_s);
        same_floats("parameters after the NaN step", a.params, b.params, total);

        /* A learning rate of 1e36: the parameters overflow in the first update and a later
         * batch's loss is not finite, with batches queued after it on the device. */
        trainer_t f, h;
        CHECK(trainer_init(&f, &c, &cfg, &o, err, sizeof err) == 0, "%s", err);
        CHECK(trainer_init(&h, &c, &cfg, &o, err, sizeof err) == 0, "%s", err);
        f.adam.lr = h.adam.lr = 1e36;
        epoch_cursor_t fa = {0, 0, 0, 0}, fb = {0, 0, 0, 0};
        use_device_epoch(1);
        const int rf = trainer_train_epoch(&f, &c, 0, &fa, err_d, sizeof err_d);
        use_device_epoch(0);
        const int rh = trainer_train_epoch(&h, &c, 0, &fb, err_s, sizeof err_s);
        printf("  lr 1e36: device driver rc %d at batch %lld, loss sum %g \"%.100s\"\n", rf,
               (long long)fa.batch, fa.loss_sum, err_d);
        CHECK(rf == TRAIN_NONFINITE && rh == TRAIN_NONFINITE && fa.batch == fb.batch &&
                  fa.batch > 0 && strcmp(err_d, err_s) == 0 && f.step == h.step &&
                  memcmp(&fa.loss_sum, &fb.loss_sum, sizeof fa.loss_sum) == 0,
              "%s: lr 1e36: rc %d/%d, batch %lld/%lld, \"%s\" vs \"%s\"", name, rf, rh,
              (long long)fa.batch, (long long)fb.batch, err_d, err_s);
        same_floats("parameters at the overflowing step", f.params, h.params, total);
        trainer_free(&f);
        trainer_free(&h);
        trainer_free(&a);
        trainer_free(&b);
        trainer_free(&dev);
        trainer_free(&step);
    }
    unsetenv("TIMIREC_GPU_EPOCH");
    corpus_free(&c);
    du_rm_rf(dir);
    return gt_finish("test_gpu_epoch");
}
#endif
