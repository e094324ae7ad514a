/* CUDA graphs of the pretrain step and the no-sync rule of a training step (kernels/epoch.cu,
 * gpu_ops.h), through gpu_train_epoch on small synthetic corpora; every case against a twin
 * model trained the same way with graphs off (TIMIREC_GPU_GRAPHS=0):
 * - a stale graph is captured again: after the resident corpus is freed and built again
 *   between epochs (same shapes; calloc may hand out the same address), the next epoch
 *   captures anew instead of replaying pointers into freed memory;
 * - no per-step value is frozen into a graph: l2 and lr changed between epochs apply to the
 *   replayed steps; opt->step advances by exactly one per batch, also on the batch captured;
 * - a capture that fails (a synchronous call inside it, or scratch that would have to grow) is
 *   abandoned, says why once, and the run goes on with direct launches and the same results;
 * - dynamic shared memory: with enough negatives the training scores need more than 48 KiB
 *   of it; an evaluation with few candidates in between epochs must not lower the kernel's
 *   opt-in below what the captured graph launches with (the emulation checks the opt-in at
 *   every launch, replays included);
 * - inside a no-sync region a synchronous helper is fatal, naming the region (child
 *   processes).
 * What must agree how: in the emulation graph replays and direct launches run the same host
 * code, so parameters must be identical; on a GPU a replay runs cuBLAS on another stream with
 * another workspace, so they agree within Adam's step (gt_same_params); after a failed capture
 * both sides launch directly on one stream: identical on a GPU too.
 * SKIP without CUDA or a GPU (test_emu_graphs: emulated). */
#include "test_util.h"

#ifndef TIMIREC_CUDA
int main(void) {
    printf("SKIP: built without CUDA (no nvcc)\n");
    return TU_SKIP;
}
#else
#include "data_util.h"
#include "gpu_test_util.h"
#include "timirec/gpu_data.h"
#include "timirec/prepare.h"

static const char *tmpdir;
static int emulated;

/* A pretrain model on the device and its optimiser, for corpus c. */
typedef struct {
    model_layout_t lay;
    gpu_model_t *g;
    adam_t opt;
    float *params;
} run_t;

static void run_init(run_t *r, const corpus_t *c, int d, int max_B, int history_max, int max_C) {
    model_config_t cfg = {.stage = STAGE_PRETRAIN, .n_items = c->n_items, .emb_size = d,
                          .attn_size = 8, .K = 2, .history_max = history_max, .add_pos = 1,
                          .add_trm = 1, .n_layers = 1, .temp = 1, .dropout = 0.5};
    char err[512];
    if (model_config_check(&cfg, err, sizeof err)) {
        printf("FAIL: %s\n", err);
        exit(1);
    }
    model_layout_build(&cfg, &r->lay);
    r->params = (float *)malloc((size_t)r->lay.total * sizeof(float));
    model_init_params(&r->lay, 5, r->params);
    r->g = gpu_model_create(&r->lay, r->params, max_B, history_max, max_C, err, sizeof err);
    if (!r->g) {
        printf("FAIL: gpu_model_create: %s\n", err);
        exit(1);
    }
    adam_init(&r->opt, 1e-3, 1e-4);
}

static void run_free(run_t *r) {
    gpu_model_free(r->g);
    free(r->params);
}

/* After every queued batch: opt->step must be the number of batches queued so far. */
typedef struct {
    const adam_t *opt;
    int64_t step0, first, bad;
} step_watch_t;
static int watch_steps(void *ctx, int64_t batch, int64_t n_batches) {
    step_watch_t *w = (step_watch_t *)ctx;
    (void)n_batches;
    if (w->opt->step != w->step0 + (batch - w->first + 1) && w->bad < 0) w->bad = batch;
    return 0;
}

/* One epoch; graphs on or off. Returns the epoch record. */
static gpu_epoch_t epoch(run_t *r, gpu_data_t *d, uint32_t ep, int bs, int graphs) {
    const double t0 = tmr_now();
    if (graphs) unsetenv("TIMIREC_GPU_GRAPHS");
    else setenv("TIMIREC_GPU_GRAPHS", "0", 1);
    gpu_epoch_t e;
    memset(&e, 0, sizeof e);
    e.seed = 3;
    e.epoch = ep;
    e.batch_size = bs;
    e.step = r->opt.step;
    step_watch_t w = {&r->opt, r->opt.step, 0, -1};
    e.after_batch = watch_steps;
    e.ctx = &w;
    char err[512];
    const int rc = gpu_train_epoch(r->g, d, &r->opt, &e, err, sizeof err);
    CHECK(rc == 0, "epoch %u: %s", ep + 1, err);
    CHECK(w.bad < 0, "epoch %u (graphs %d): opt->step was not one per batch after batch %lld",
          ep + 1, graphs, (long long)w.bad);
    CHECK(e.bad_batch < 0 && isfinite(e.loss_sum), "epoch %u: bad batch %lld, loss %g", ep + 1,
          (long long)e.bad_batch, e.loss_sum);
    unsetenv("TIMIREC_GPU_GRAPHS");
    if (getenv("TMR_TEST_TIMES")) printf("    (epoch %u, graphs %d: %.2f s)\n", ep + 1, graphs, tmr_now() - t0);
    return e;
}

/* Parameters and both moments of the graph run a against the direct twin b. */
static void compare(const char *what, run_t *a, run_t *b, int exact, int64_t steps) {
    const int64_t n = a->lay.total;
    float *pa = (float *)malloc((size_t)n * 4 * 3), *pb = (float *)malloc((size_t)n * 4 * 3);
    gpu_model_download_params(a->g, pa);
    gpu_model_download_params(b->g, pb);
    gpu_model_download_adam(a->g, pa + n, pa + 2 * n);
    gpu_model_download_adam(b->g, pb + n, pb + 2 * n);
    char label[160];
    snprintf(label, sizeof label, "%s: parameters", what);
    gt_same_params(label, pa, pb, n, exact, a->opt.lr, steps);
    if (exact) { /* the moments have no step bound to compare against otherwise */
        snprintf(label, sizeof label, "%s: Adam m", what);
        gt_same_params(label, pa + n, pb + n, n, 1, a->opt.lr, steps);
        snprintf(label, sizeof label, "%s: Adam v", what);
        gt_same_params(label, pa + 2 * n, pb + 2 * n, n, 1, a->opt.lr, steps);
    }
    CHECK(a->opt.step == b->opt.step, "%s: Adam steps %lld vs %lld", what,
          (long long)a->opt.step, (long long)b->opt.step);
    free(pa);
    free(pb);
}

/* Stale graphs, values frozen into graphs, opt->step, the shared memory opt-in (epochs 1-3,
 * an evaluation before epochs 2 and 3; with all, epochs 4-5 too). */
static void graphs_follow_changes(const corpus_t *c, int d, int bs, int num_neg, int all,
                                  const char *what) {
    printf("%s: %lld training instances, batch %d, %d negatives\n", what,
           (long long)c->phase[PHASE_TRAIN].n_inst, bs, num_neg);
    const int hmax = 10; /* histories cut at 10 items */
    const int max_C = 1 + (num_neg > c->phase[PHASE_DEV].n_neg ? num_neg : c->phase[PHASE_DEV].n_neg);
    run_t gr, dr;
    run_init(&gr, c, d, bs, hmax, max_C);
    run_init(&dr, c, d, bs, hmax, max_C);
    gpu_data_t *dg = gpu_data_create(c, hmax, num_neg), *dd = gpu_data_create(c, hmax, num_neg);
    const int exact = gpu_is_emulated();
    int64_t steps = 0;
    int64_t *ranks = (int64_t *)malloc((size_t)c->phase[PHASE_DEV].n_inst * sizeof(int64_t));

    gpu_epoch_t e = epoch(&gr, dg, 0, bs, 1);
    epoch(&dr, dd, 0, bs, 0);
    steps += e.n_batches;
    printf("  epoch 1: %lld batches, %lld graph launches, %lld captures\n", (long long)e.n_batches,
           (long long)e.graph_replays, (long long)e.graph_captures);
    CHECK(e.graph_captures >= 1 && e.graph_replays >= 1, "%s: epoch 1 captured %lld, launched %lld graphs",
          what, (long long)e.graph_captures, (long long)e.graph_replays);
    compare("epoch 1", &gr, &dr, exact, steps);

    /* An evaluation (few candidates: smaller shared memory) between two epochs. */
    gpu_eval_phase(gr.g, dg, PHASE_DEV, bs, ranks);
    e = epoch(&gr, dg, 1, bs, 1);
    epoch(&dr, dd, 1, bs, 0);
    steps += e.n_batches;
    printf("  epoch 2 after an evaluation: %lld graph launches, %lld captures\n",
           (long long)e.graph_replays, (long long)e.graph_captures);
    CHECK(e.graph_replays >= 1, "%s: epoch 2 launched no graph", what);

    /* Another evaluation, without any allocation in between this time: replays only (a graph
     * captured before it must still launch: the evaluation must not have lowered a kernel's
     * shared memory opt-in). */
    gpu_eval_phase(gr.g, dg, PHASE_DEV, bs, ranks);
    e = epoch(&gr, dg, 2, bs, 1);
    epoch(&dr, dd, 2, bs, 0);
    steps += e.n_batches;
    printf("  epoch 3: %lld graph launches, %lld captures, %lld of them stale graphs\n",
           (long long)e.graph_replays, (long long)e.graph_captures, (long long)e.graph_stale);
    CHECK(e.graph_stale == 0 && e.graph_replays >= 1,
          "%s: epoch 3 found %lld graphs stale (nothing was reallocated)", what,
          (long long)e.graph_stale);
    compare("epochs 2-3", &gr, &dr, exact, steps);
    if (!all) goto out;

    /* The resident corpus built again (same shapes): the graphs must be captured again. */
    gpu_data_free(dg);
    dg = gpu_data_create(c, hmax, num_neg);
    e = epoch(&gr, dg, 3, bs, 1);
    epoch(&dr, dd, 3, bs, 0);
    steps += e.n_batches;
    printf("  epoch 4 after the corpus was rebuilt: %lld graph launches, %lld captures, %lld of "
           "them stale graphs\n", (long long)e.graph_replays, (long long)e.graph_captures,
           (long long)e.graph_stale);
    CHECK(e.graph_stale >= 1, "%s: after the corpus was rebuilt no graph was captured again", what);
    compare("epoch 4 (rebuilt corpus)", &gr, &dr, exact, steps);

    /* l2 and lr changed between epochs: the replays must use the new ones. */
    gr.opt.l2 = dr.opt.l2 = 0.05;
    gr.opt.lr = dr.opt.lr = 3e-3;
    e = epoch(&gr, dg, 4, bs, 1);
    epoch(&dr, dd, 4, bs, 0);
    steps += e.n_batches;
    printf("  epoch 5 with l2 0.05, lr 3e-3: %lld graph launches, %lld captures\n",
           (long long)e.graph_replays, (long long)e.graph_captures);
    CHECK(e.graph_replays >= 1, "%s: epoch 5 launched no graph", what);
    compare("epoch 5 (l2 and lr changed)", &gr, &dr, exact, steps);
    CHECK(gpu_model_graphs_off_why(gr.g) == NULL, "%s: graphs turned off: %s", what,
          gpu_model_graphs_off_why(gr.g));

out:
    free(ranks);
    gpu_data_free(dg);
    gpu_data_free(dd);
    run_free(&gr);
    run_free(&dr);
}

/* A capture that fails: abandoned, said once, direct launches from then on, same results. */
static void failed_capture(const corpus_t *c, int d, int bs, int how, const char *expect) {
    const int hmax = 10; /* histories cut at 10 items */
    const int max_C = 1 + (1 > c->phase[PHASE_DEV].n_neg ? 1 : c->phase[PHASE_DEV].n_neg);
    run_t gr, dr;
    run_init(&gr, c, d, bs, hmax, max_C);
    run_init(&dr, c, d, bs, hmax, max_C);
    gpu_data_t *dg = gpu_data_create(c, hmax, 1), *dd = gpu_data_create(c, hmax, 1);
    gpu_model_test_capture_failure(gr.g, how);
    gpu_epoch_t e = epoch(&gr, dg, 0, bs, 1);
    epoch(&dr, dd, 0, bs, 0);
    const char *why = gpu_model_graphs_off_why(gr.g);
    printf("  capture failure %d: %lld graph launches; graphs off: %s\n", how,
           (long long)e.graph_replays, why ? why : "(not off)");
    CHECK(why && strstr(why, expect), "capture failure %d: graphs off because \"%s\", expected \"%s\"",
          how, why ? why : "(not off)", expect);
    CHECK(e.graph_replays == 0, "capture failure %d: %lld graphs launched", how,
          (long long)e.graph_replays);
    e = epoch(&gr, dg, 1, bs, 1);
    epoch(&dr, dd, 1, bs, 0);
    CHECK(e.graph_replays == 0 && e.graph_captures == 0,
          "capture failure %d: the next epoch launched %lld graphs", how, (long long)e.graph_replays);
    /* after the failure both sides launch directly on one stream: identical, GPU included */
    compare("after a failed capture", &gr, &dr, 1, 2 * e.n_batches);
    gpu_data_free(dg);
    gpu_data_free(dd);
    run_free(&gr);
    run_free(&dr);
}

/* A synchronous helper inside a no-sync region ends the process with a message naming it. */
static int sync_in_region(void *which_p) {
    const int which = *(const int *)which_p;
    float *dev = (float *)gpu_malloc(16), host[4] = {1, 2, 3, 4};
    gpu_nosync_begin("the test's region");
    if (which == 0) gpu_to_device(dev, host, sizeof host);
    else if (which == 1) gpu_to_host(host, dev, sizeof host);
    else gpu_sync();
    return 0; /* not reached when the rule holds */
}
static void nosync_dies(int which) {
    char buf[2048];
    const int status = tu_run_child(sync_in_region, &which, buf, sizeof buf);
    const int died = status != -1 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    printf("  no-sync region, call %d: %s (%.*s)\n", which, died ? "stopped" : "NOT stopped",
           (int)strcspn(buf, "\n"), buf);
    CHECK(died && strstr(buf, "the test's region"), "call %d inside a no-sync region: exit status %d, \"%s\"",
          which, status, buf);
}

int main(void) {
    gpu_ctx_t *probe = gt_start("test_gpu_graphs");
    gpu_ctx_free(probe);
    gpu_debug_sync(0); /* graphs are off under debug synchronisation */
    emulated = gpu_is_emulated();
    tmpdir = du_tempdir("gpu_graphs");

    corpus_t small;
    du_synth_corpus(tmpdir, "small", 40, 60, 10, 5, 11, &small);
    graphs_follow_changes(&small, 16, 48, 1, 1, "small corpus");
    failed_capture(&small, 16, 48, GPU_CAPTURE_FAIL_SYNC, "capturing the");
    failed_capture(&small, 16, 48, GPU_CAPTURE_FAIL_GROW, "would grow");

    /* 13,000 negatives: the training scores take (16 + 13,001) x 4 = 52 KiB of dynamic shared
     * memory (over the 48 KiB default), the evaluation's 6 candidates a few hundred bytes.
     * Four users: 3 batches of 8 an epoch (direct, captured, replayed). */
    corpus_t wide;
    du_synth_corpus(tmpdir, "wide", 4, 16000, 8, 5, 11, &wide);
    graphs_follow_changes(&wide, 16, 8, 13000, 0, "13,000 negatives");

    for (int which = 0; which < 3; which++) nosync_dies(which);

    corpus_free(&small);
    corpus_free(&wide);
    du_rm_rf(tmpdir);
    return gt_finish("test_gpu_graphs");
}
#endif
