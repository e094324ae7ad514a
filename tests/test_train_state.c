/* The resumable training state (train_state.h):
 *  - save then load gives back every parameter, moment, counter, the epoch's loss sum and the
 *    dev history bit for bit;
 *  - a state is refused, with every differing option named, when an option that changes
 *    training differs (int, float and string options), and accepted when only options listed
 *    as may-differ do; refused for another dataset (fingerprint), a truncated or foreign file;
 *  - training interrupted mid-epoch (finetune: dropout keyed by the step), saved, loaded into a
 *    fresh trainer and continued ends with exactly the parameters and moments of an
 *    uninterrupted run. */
#include "test_util.h"
#include "tiny_corpus.h"
#include "timirec/checkpoint.h"
#include "timirec/train_state.h"
#include "timirec/trainer.h"

static uint64_t rs = 777;
static float rnd(void) { return (float)((double)(tc_next(&rs) >> 11) / 9007199254740992.0) - 0.5f; }

/* A small option table like the run's. */
static int64_t o_batch = 256, o_resume = 0, o_threads = 1;
static double o_lr = 1e-3;
static const char *o_metric = "NDCG,HR", *o_sep = "\t";
static opt_t opts[] = {
    {"batch_size", OPT_INT, &o_batch, 1, 1 << 20, ""}, {"lr", OPT_FLOAT, &o_lr, 0, 10, ""},
    {"metric", OPT_STR, &o_metric, 0, 0, ""},          {"sep", OPT_STR, &o_sep, 0, 0, ""},
    {"threads", OPT_INT, &o_threads, 0, 1024, ""},     {"resume", OPT_INT, &o_resume, 0, 1, ""}};
static const int n_opts = (int)(sizeof opts / sizeof *opts);
static const char *const may_differ[] = {"threads", "resume", NULL};

static int bits_equal(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, (size_t)n * sizeof *a) == 0;
}

static void test_round_trip(const char *dir, const corpus_t *c) {
    model_config_t cfg = {.stage = STAGE_FINETUNE, .n_items = c->n_items, .emb_size = 8,
                          .attn_size = 4, .K = 3, .history_max = 6, .add_pos = 1, .add_trm = 1,
                          .n_layers = 3, .temp = 0.5, .dropout = 0.5};
    model_layout_t lay;
    model_layout_build(&cfg, &lay);
    const int64_t n = lay.total;
    float *buf = malloc(6 * (size_t)n * sizeof *buf);
    for (int64_t i = 0; i < 3 * n; i++) buf[i] = rnd();
    double dev[4 * 3];
    for (int i = 0; i < 12; i++) dev[i] = (double)rnd() / 3.0;
    uint64_t fp = train_state_fingerprint(c);
    train_progress_t p = {4, 7, 0.1 + 1.0 / 3.0, 4 * 14 + 7, 4 * 14 + 7, 4, 3, dev, fp, NULL};
    char path[512], err[2048];
    snprintf(path, sizeof path, "%s/sub/run.safetensors.state", dir);
    CHECK(train_state_save(path, &lay, buf, buf + n, buf + 2 * n, &p, opts, n_opts, err,
                           sizeof err) == 0, "%s", err);
    train_progress_t q;
    int rc = train_state_load(path, &lay, buf + 3 * n, buf + 4 * n, buf + 5 * n, &q, fp, opts,
                              n_opts, may_differ, err, sizeof err);
    CHECK(rc == 0, "%s", err);
    if (rc == 0) {
        CHECK(bits_equal(buf, buf + 3 * n, 3 * n), "tensors differ after a round trip");
        CHECK(q.epoch == 4 && q.batch == 7 && q.step == 63 && q.adam_step == 63 && q.n_dev == 4 &&
                  q.n_values == 3, "counters");
        CHECK(memcmp(&q.loss_sum, &p.loss_sum, sizeof q.loss_sum) == 0, "loss_sum %.17g vs %.17g",
              q.loss_sum, p.loss_sum);
        CHECK(memcmp(q.dev, dev, sizeof dev) == 0, "dev history");
        train_progress_free(&q);
    }
    /* Only may-differ options changed: accepted. */
    o_threads = 2;
    o_resume = 1;
    rc = train_state_load(path, &lay, buf + 3 * n, buf + 4 * n, buf + 5 * n, &q, fp, opts, n_opts,
                          may_differ, err, sizeof err);
    CHECK(rc == 0, "threads/resume differ: %s", err);
    if (rc == 0) train_progress_free(&q);
    /* Others: refused, each named (a tab shown as \t). */
    o_batch = 128;
    o_lr = 0.002;
    o_sep = ",";
    rc = train_state_load(path, &lay, buf + 3 * n, buf + 4 * n, buf + 5 * n, &q, fp, opts, n_opts,
                          may_differ, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "--batch_size 256 in the state, 128 now") &&
              strstr(err, "--lr 0.001 in the state, 0.002 now") &&
              strstr(err, "--sep \\t in the state, , now") && !strstr(err, "threads") &&
              strstr(err, "cannot resume from") == err, "got \"%s\"", err);
    o_batch = 256;
    o_lr = 1e-3;
    o_sep = "\t";
    /* Another dataset. */
    rc = train_state_load(path, &lay, buf + 3 * n, buf + 4 * n, buf + 5 * n, &q, fp ^ 1, opts,
                          n_opts, may_differ, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "written for other data"), "got \"%s\"", err);
    /* Another model shape with the same options (a layout that does not match). */
    model_config_t cfg2 = cfg;
    cfg2.K = 2;
    model_layout_t lay2;
    model_layout_build(&cfg2, &lay2);
    float *buf2 = malloc(3 * (size_t)lay2.total * sizeof *buf2);
    rc = train_state_load(path, &lay2, buf2, buf2 + lay2.total, buf2 + 2 * lay2.total, &q, fp, opts,
                          n_opts, may_differ, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "param.interest_extractor.W2.weight missing or not F32"),
          "got \"%s\"", err);
    free(buf2);
    /* A truncated file and a model checkpoint are refused. */
    char trunc[1100];
    snprintf(trunc, sizeof trunc, "head -c 3000 '%s' > '%s.cut'", path, path);
    CHECK(system(trunc) == 0, "head");
    snprintf(trunc, sizeof trunc, "%s.cut", path);
    rc = train_state_load(trunc, &lay, buf + 3 * n, buf + 4 * n, buf + 5 * n, &q, fp, opts, n_opts,
                          may_differ, err, sizeof err);
    CHECK(rc == -1, "a truncated state was accepted");
    char ck[600];
    snprintf(ck, sizeof ck, "%s/model.safetensors", dir);
    CHECK(checkpoint_save(ck, &lay, buf, "{}", err, sizeof err) == 0, "%s", err);
    rc = train_state_load(ck, &lay, buf + 3 * n, buf + 4 * n, buf + 5 * n, &q, fp, opts, n_opts,
                          may_differ, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "not a training state"), "got \"%s\"", err);
    free(buf);
    o_threads = 1;
    o_resume = 0;
}

static void init_trainer(trainer_t *t, const corpus_t *c, int lazy) {
    model_config_t cfg = {.stage = STAGE_FINETUNE, .emb_size = 8, .attn_size = 4, .K = 2,
                          .add_pos = 1, .add_trm = 1, .n_layers = 2, .temp = 0.5, .dropout = 0.5};
    train_opts_t o;
    train_opts_default(&o);
    o.batch_size = 16;
    o.history_max = 6;
    o.l2 = 1e-4;
    o.seed = 11;
    o.lazy_adam = lazy;
    char err[1024];
    if (trainer_init(t, c, &cfg, &o, err, sizeof err)) {
        fprintf(stderr, "trainer_init: %s\n", err);
        exit(1);
    }
}

/* Interrupted in epoch 2, saved, loaded into a fresh trainer, continued: the same bits as the
 * uninterrupted run, with Adam and with LazyAdam (lazy: its per-row step counts too). */
static void test_resume_bits(const char *dir, const corpus_t *c, int lazy) {
    char err[2048], path[512];
    snprintf(path, sizeof path, "%s/resume.state", dir);
    const uint64_t fp = train_state_fingerprint(c);
    /* Uninterrupted: three epochs. */
    trainer_t ref;
    init_trainer(&ref, c, lazy);
    double ref_loss[3];
    for (uint32_t e = 0; e < 3; e++) {
        epoch_cursor_t cur = {0, 0, 0, 0};
        CHECK(trainer_train_epoch(&ref, c, e, &cur, err, sizeof err) == TRAIN_DONE, "%s", err);
        ref_loss[e] = cur.loss_sum;
    }
    /* Interrupted in epoch 2 after 3 batches, saved, freed. */
    trainer_t a;
    init_trainer(&a, c, lazy);
    epoch_cursor_t cur = {0, 0, 0, 0};
    CHECK(trainer_train_epoch(&a, c, 0, &cur, err, sizeof err) == TRAIN_DONE, "%s", err);
    double dev[3] = {0.25, 0.5, 0.75};
    a.test_stop_after = a.batches_run + 3;
    cur = (epoch_cursor_t){0, 0, 0, 0};
    CHECK(trainer_train_epoch(&a, c, 1, &cur, err, sizeof err) == TRAIN_INTERRUPTED, "%s", err);
    CHECK(cur.batch == 3 && cur.n_batches > 4, "stopped at batch %lld of %lld", (long long)cur.batch,
          (long long)cur.n_batches);
    train_progress_t p = {1, cur.batch, cur.loss_sum, a.step, a.adam.step, 1, 3, dev, fp,
                          a.row_step};
    CHECK(train_state_save(path, &a.lay, a.params, a.adam_m, a.adam_v, &p, opts, n_opts, err,
                           sizeof err) == 0, "%s", err);
    trainer_free(&a);
    /* A fresh trainer (other initial parameters would do: they are all replaced). */
    trainer_t b;
    init_trainer(&b, c, lazy);
    for (int64_t i = 0; i < b.lay.total; i++) b.params[i] = rnd();
    train_progress_t q;
    CHECK(train_state_load(path, &b.lay, b.params, b.adam_m, b.adam_v, &q, fp, opts, n_opts,
                           may_differ, err, sizeof err) == 0, "%s", err);
    const int64_t n_rows = adam_lazy_rows(&b.lay);
    CHECK((q.row_step != NULL) == lazy, "per-row step counts %s in the state",
          q.row_step ? "present" : "absent");
    if (lazy && q.row_step) {
        for (int64_t i = 0; i < n_rows; i++) b.row_step[i] = 0x55; /* all replaced */
        memcpy(b.row_step, q.row_step, (size_t)n_rows * sizeof *b.row_step);
    }
    b.step = q.step;
    b.adam.step = q.adam_step;
    epoch_cursor_t cur2 = {q.batch, q.loss_sum, 0, 0};
    CHECK(trainer_train_epoch(&b, c, (uint32_t)q.epoch, &cur2, err, sizeof err) == TRAIN_DONE, "%s", err);
    CHECK(memcmp(&cur2.loss_sum, &ref_loss[1], sizeof(double)) == 0,
          "epoch 2 loss sum %.17g, uninterrupted %.17g", cur2.loss_sum, ref_loss[1]);
    cur2 = (epoch_cursor_t){0, 0, 0, 0};
    CHECK(trainer_train_epoch(&b, c, 2, &cur2, err, sizeof err) == TRAIN_DONE, "%s", err);
    CHECK(memcmp(&cur2.loss_sum, &ref_loss[2], sizeof(double)) == 0, "epoch 3 loss sum");
    CHECK(bits_equal(b.params, ref.params, ref.lay.total), "parameters differ from the uninterrupted run");
    CHECK(bits_equal(b.adam_m, ref.adam_m, ref.lay.total) && bits_equal(b.adam_v, ref.adam_v, ref.lay.total),
          "Adam moments differ from the uninterrupted run");
    CHECK(b.step == ref.step && b.adam.step == ref.adam.step, "step %lld vs %lld",
          (long long)b.step, (long long)ref.step);
    if (lazy) { /* the counts match, and some row really lagged behind the global step */
        CHECK(memcmp(b.row_step, ref.row_step, (size_t)n_rows * sizeof *b.row_step) == 0,
              "LazyAdam's per-row step counts differ from the uninterrupted run");
        int64_t lagging = 0;
        for (int64_t i = 0; i < n_rows; i++) lagging += ref.row_step[i] < ref.adam.step;
        CHECK(lagging > 0, "every row was touched at every step: the test proves nothing");
    }
    train_progress_free(&q);
    trainer_free(&b);
    trainer_free(&ref);
}

int main(void) {
    const char *tmp = du_tempdir("train_state");
    char dir[256];
    snprintf(dir, sizeof dir, "%s", tmp);
    corpus_t c;
    tc_make_corpus(dir, 24, 30, 10, 6, 3, &c);
    test_round_trip(dir, &c);
    test_resume_bits(dir, &c, 0);
    test_resume_bits(dir, &c, 1);
    corpus_free(&c);
    du_rm_rf(dir);
    return tu_finish("test_train_state");
}
