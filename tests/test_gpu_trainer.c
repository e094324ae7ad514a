/* The trainer's CUDA switch (train_opts_t.use_gpu): on a small synthetic corpus, two epochs of
 * each stage with the CUDA backend against the CPU backend from the same seed give the same
 * epoch losses (1e-4 relative) and dev metrics (HR@5 and NDCG@5 within 0.02: a rank can move
 * on a near tie); the host copy of the parameters is the authoritative one between trainer
 * calls (parameters written on the host, as a checkpoint load does, are what the next
 * evaluation uses); the finetune intents of the last batch reach the CPU workspace (the
 * reference's check_epoch view); the command line's --gpu 0 logs "Device: cuda:0, <device>".
 * SKIP without CUDA or a GPU (test_emu_trainer: emulated). */
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
#include "timirec/run.h"
#include "timirec/trainer.h"

int main(void) {
    gpu_ctx_t *probe = gt_start("test_gpu_trainer");
    gpu_ctx_free(probe);
    /* Small shapes in the emulation (TMR_EMU_FULL=1: the GPU's) and when asked
     * (TMR_SMALL_SHAPES=1, e.g. under compute-sanitizer). */
    const int emu = (gpu_is_emulated() && !getenv("TMR_EMU_FULL")) || getenv("TMR_SMALL_SHAPES");
    const char *dir = du_tempdir("gpu_trainer");
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/toy", dir);
    synth_opts_t so;
    synth_defaults(&so);
    so.n_users = emu ? 150 : 1000;
    so.n_items = emu ? 60 : 500;
    so.seq_len = emu ? 12 : 30; /* emulated: ~25 batches an epoch (the fused kernels' warp
                                 * shuffles make every emulated step cost fiber switches) */
    so.seed = 3;
    interactions_t x;
    CHECK(synth_generate(&so, &x, err, sizeof err) == 0, "synth: %s", err);
    CHECK(prepare_write(&x, path, 20, 3, err, sizeof err) == 0, "prepare: %s", err);
    interactions_free(&x);
    corpus_t c;
    corpus_opts_t co = {.path = dir, .dataset = "toy", .sep = '\t'};
    if (corpus_load(&co, &c, err, sizeof err)) {
        CHECK(0, "%s", err);
        return tu_finish("test_gpu_trainer");
    }
    metric_spec_t spec;
    metrics_parse("HR,NDCG", "5", &spec, err, sizeof err);
    float *pretrained = NULL;
    model_layout_t pre_lay;
    for (int stage = STAGE_PRETRAIN; stage <= STAGE_FINETUNE; stage++) {
        const char *name = stage == STAGE_PRETRAIN ? "pretrain" : "finetune";
        model_config_t cfg = {.stage = stage, .emb_size = emu ? 16 : 64, .attn_size = 8, .K = 2,
                              .add_pos = 1, .add_trm = 1, .n_layers = stage ? 2 : 1,
                              .temp = stage ? 0.5 : 1, .dropout = 0.5};
        train_opts_t o;
        train_opts_default(&o);
        o.batch_size = emu ? 64 : 256;
        o.history_max = 10;
        o.seed = 5;
        trainer_t cpu, gpu;
        CHECK(trainer_init(&cpu, &c, &cfg, &o, err, sizeof err) == 0, "%s", err);
        o.use_gpu = 1;
        CHECK(trainer_init(&gpu, &c, &cfg, &o, err, sizeof err) == 0, "%s", err);
        printf("%s: %s vs %s\n", name, gpu.backend, cpu.backend);
        CHECK(trainer_gpu_model(&gpu) != NULL, "%s: use_gpu fell back: %s", name, gpu.backend);
        if (pretrained) { /* finetune from the (CPU's) pretrained extractor, on both */
            model_copy_shared(&cpu.lay, cpu.params, &pre_lay, pretrained);
            model_copy_shared(&gpu.lay, gpu.params, &pre_lay, pretrained);
        }
        for (uint32_t e = 0; e < 2; e++) {
            int64_t n1, n2;
            const double lc = trainer_epoch(&cpu, &c, e, &n1, err, sizeof err);
            const double lg = trainer_epoch(&gpu, &c, e, &n2, err, sizeof err);
            if (stage == STAGE_FINETUNE) { /* read as run.c does: right after the epoch */
                const size_t n = (size_t)o.batch_size * cfg.K;
                float *ig = (float *)malloc(4 * n * sizeof(float)), *ic = ig + 2 * n;
                const int Bg = trainer_last_intents(&gpu, ig, ig + n);
                const int Bc = trainer_last_intents(&cpu, ic, ic + n);
                CHECK(Bg == Bc && Bg > 0, "%s: last batch of %d vs %d instances", name, Bg, Bc);
                const int64_t nK = (int64_t)Bg * cfg.K;
                gt_compare_host("last batch's pred_intent", ig, ic, nK, 1e-3);
                gt_compare_host("last batch's target_intent", ig + n, ic + n, nK, 1e-3);
                free(ig);
            }
            double vc[2], vg[2];
            trainer_evaluate(&cpu, &c, PHASE_DEV, 0, &spec, vc);
            trainer_evaluate(&gpu, &c, PHASE_DEV, 0, &spec, vg);
            const double rel = fabs(lg - lc) / fabs(lc);
            printf("  epoch %u: loss gpu %.7f cpu %.7f (rel %.1e); dev HR@5 %.4f / %.4f, NDCG@5 "
                   "%.4f / %.4f\n", e + 1, lg, lc, rel, vg[0], vc[0], vg[1], vc[1]);
            CHECK(n1 == n2 && isfinite(lg) && rel <= 1e-4, "%s epoch %u: loss %.9g vs %.9g", name,
                  e + 1, lg, lc);
            CHECK(fabs(vg[0] - vc[0]) <= 0.02 && fabs(vg[1] - vc[1]) <= 0.02,
                  "%s epoch %u: dev metrics %.4f/%.4f vs %.4f/%.4f", name, e + 1, vg[0], vg[1],
                  vc[0], vc[1]);
        }
        /* Host parameters are authoritative: give the GPU trainer the CPU's, as a checkpoint
         * load would, and the evaluations must agree to float rounding. */
        memcpy(gpu.params, cpu.params, (size_t)cpu.lay.total * sizeof(float));
        double vc[2], vg[2];
        trainer_evaluate(&cpu, &c, PHASE_TEST, 0, &spec, vc);
        trainer_evaluate(&gpu, &c, PHASE_TEST, 0, &spec, vg);
        printf("  test after copying the CPU's parameters: HR@5 %.4f / %.4f, NDCG@5 %.4f / %.4f\n",
               vg[0], vc[0], vg[1], vc[1]);
        CHECK(fabs(vg[0] - vc[0]) <= 0.005 && fabs(vg[1] - vc[1]) <= 0.005,
              "%s: same parameters, test metrics %.4f/%.4f vs %.4f/%.4f", name, vg[0], vg[1],
              vc[0], vc[1]);
        if (stage == STAGE_PRETRAIN) {
            pre_lay = cpu.lay;
            pretrained = (float *)malloc((size_t)cpu.lay.total * sizeof(float));
            memcpy(pretrained, cpu.params, (size_t)cpu.lay.total * sizeof(float));
        }
        trainer_free(&cpu);
        trainer_free(&gpu);
    }
    free(pretrained);

    { /* The command line with --gpu 0: the log names the device that does the work. */
        char logdir[600], logpath[700], line[1024], device[1024] = "";
        snprintf(logdir, sizeof logdir, "%s/run/", dir);
        snprintf(logpath, sizeof logpath, "%s/run.txt", logdir);
        char *argv[] = {"timirec", "--model_name", "TiMiRec", "--path", (char *)dir, "--dataset",
                        "toy", "--stage", "pretrain", "--epoch", "1", "--emb_size", "16",
                        "--history_max", "10", "--batch_size", "64", "--gpu", "0", "--model_dir",
                        logdir, "--log_dir", logdir, "--log_file", logpath, NULL};
        const int rc = run_main((int)(sizeof argv / sizeof *argv) - 1, argv);
        FILE *f = fopen(logpath, "r");
        while (f && fgets(line, sizeof line, f))
            if (strncmp(line, "Device: ", 8) == 0) snprintf(device, sizeof device, "%s", line + 8);
        if (f) fclose(f);
        device[strcspn(device, "\n")] = '\0';
        char desc[512];
        gpu_device_count(desc, sizeof desc);
        printf("  run_main --gpu 0: rc %d, Device: %s\n", rc, device);
        CHECK(rc == 0 && strncmp(device, "cuda:0, ", 8) == 0 && strstr(device, desc),
              "--gpu 0: rc %d, the log says \"Device: %s\", expected \"cuda:0, %s\"", rc, device,
              desc);
        unsetenv("CUDA_VISIBLE_DEVICES");
    }
    corpus_free(&c);
    du_rm_rf(dir);
    return gt_finish("test_gpu_trainer");
}
#endif
