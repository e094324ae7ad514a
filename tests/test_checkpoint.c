/* Checkpoints: exact round trip with reference names and config metadata; strict loading
 * refuses a missing, unexpected, reshaped or retyped tensor with a message naming it; partial
 * loading (finetune from the pretrained extractor) takes exactly the shared tensors. */
#include "test_util.h"
#include "data_util.h"
#include "timirec/checkpoint.h"
#include "timirec/rng.h"
#include "timirec/safetensors.h"

static char err[1024];

static model_layout_t layout(int stage, int K) {
    model_config_t c = {.stage = stage, .n_items = 40, .emb_size = 8, .attn_size = 4, .K = K,
                        .history_max = 5, .add_pos = 1, .add_trm = 1, .n_layers = 2, .temp = 1,
                        .dropout = 0.5};
    model_layout_t lay;
    model_layout_build(&c, &lay);
    return lay;
}

static void expect_load_error(const char *path, const model_layout_t *lay, int strict,
                              const char *frag) {
    float *p = calloc((size_t)lay->total, sizeof *p);
    err[0] = 0;
    int rc = checkpoint_load(path, lay, p, strict, NULL, err, sizeof err);
    CHECK(rc == -1 && strstr(err, frag), "expected an error with '%s', got rc %d '%s'", frag, rc, err);
    free(p);
}

int main(void) {
    const char *dir = du_tempdir("ckpt");
    char path[512], other[512];
    snprintf(path, sizeof path, "%s/sub/dir/fine.safetensors", dir); /* folders are created */
    model_layout_t fine = layout(STAGE_FINETUNE, 3), pre = layout(STAGE_PRETRAIN, 3);
    float *a = malloc((size_t)fine.total * sizeof *a), *b = calloc((size_t)fine.total, sizeof *b);
    for (int64_t i = 0; i < fine.total; i++) a[i] = rng_uniform01(rng_u32(1, RNG_TEST, 0, (uint64_t)i, 0)) - 0.5f;
    CHECK(checkpoint_save(path, &fine, a, "{\"K\": 3}", err, sizeof err) == 0, "save: %s", err);
    int n = 0;
    CHECK(checkpoint_load(path, &fine, b, 1, &n, err, sizeof err) == 0, "load: %s", err);
    CHECK(n == fine.n_tensors && memcmp(a, b, (size_t)fine.total * sizeof *a) == 0, "round trip");
    st_file_t f;
    if (st_read(path, &f, err, sizeof err) == 0) {
        CHECK(st_meta(&f, "format") && strcmp(st_meta(&f, "format"), CHECKPOINT_FORMAT) == 0, "format");
        CHECK(st_meta(&f, "config") && strstr(st_meta(&f, "config"), "\"K\": 3"), "config metadata");
        const st_tensor_t *t = st_find(&f, "interest_predictor.rnn.weight_ih_l0");
        CHECK(t && t->ndim == 2 && t->shape[0] == 24 && t->shape[1] == 8, "GRU weight shape [3d, d]");
        t = st_find(&f, "proj.proj_final.bias");
        CHECK(t && t->ndim == 1 && t->shape[0] == 3, "1-D bias");
        st_free(&f);
    }
    /* Partial: the pretrain layout takes the extractor's tensors from a finetune file. */
    float *c = calloc((size_t)pre.total, sizeof *c);
    CHECK(checkpoint_load(path, &pre, c, 0, &n, err, sizeof err) == 0 && n == pre.n_tensors,
          "partial load: %d tensors, %s", n, err);
    CHECK(memcmp(c, a, (size_t)pre.total * sizeof *c) == 0, "extractor tensors lead both tables");
    /* Strict: unexpected tensors (a finetune file into a pretrain model). */
    expect_load_error(path, &pre, 1, "unexpected tensor interest_predictor.i_embeddings.weight");
    /* Missing: a pretrain file into a finetune model. */
    snprintf(other, sizeof other, "%s/pre.safetensors", dir);
    checkpoint_save(other, &pre, c, NULL, err, sizeof err);
    expect_load_error(other, &fine, 1, "tensor interest_predictor.i_embeddings.weight is missing");
    /* Shape: another K. */
    model_layout_t k2 = layout(STAGE_FINETUNE, 2);
    expect_load_error(path, &k2, 1, "interest_extractor.W2.weight has shape [3, 4] but this model needs [2, 4]");
    expect_load_error(path, &k2, 0, "W2.weight has shape [3, 4]");
    /* dtype. */
    double d4[4] = {1, 2, 3, 4};
    st_entry_t e = {"interest_extractor.W1.bias", "F64", 1, {4}, d4};
    st_write(other, &e, 1, NULL, 0, err, sizeof err);
    expect_load_error(other, &pre, 0, "tensor interest_extractor.W1.bias is F64");
    expect_load_error("/nonexistent/x.safetensors", &pre, 1, "cannot open");
    free(a);
    free(b);
    free(c);
    du_rm_rf(dir);
    return tu_finish("test_checkpoint");
}
