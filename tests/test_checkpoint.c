/* Checkpoints: exact round trip with reference names and config metadata; strict loading
 * refuses a missing, unexpected, reshaped or retyped tensor with a message naming it and, for a
 * reshaped one, the setting that differs (K, item count, emb_size, history_max); partial
 * loading (finetune from the pretrained extractor) takes exactly the shared tensors. Damaged
 * files (truncated, byte ranges past the end, overlapping, reversed, with gaps or trailing
 * bytes, duplicate names, bad header JSON, another format or format version) are refused with
 * the tensor and the reason, and a refused load leaves the parameters untouched. */
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
    float *p = malloc((size_t)lay->total * sizeof *p);
    for (int64_t i = 0; i < lay->total; i++) p[i] = 7.0f; /* refused: must stay 7 */
    err[0] = 0;
    int n = -1;
    int rc = checkpoint_load(path, lay, p, strict, &n, err, sizeof err);
    CHECK(rc == -1 && strstr(err, frag), "expected an error with '%s', got rc %d '%s'", frag, rc, err);
    CHECK(n == 0, "refused load reports %d tensors loaded", n);
    int64_t changed = 0;
    for (int64_t i = 0; i < lay->total; i++) changed += p[i] != 7.0f;
    CHECK(changed == 0, "refused load (%s) changed %lld parameters", frag, (long long)changed);
    free(p);
}

/* A safetensors file from a header text and data bytes, as a damaged or foreign writer makes. */
static void write_raw(const char *path, const char *header, const void *data, size_t data_len) {
    FILE *f = fopen(path, "wb");
    uint64_t n = strlen(header);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(n >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, n, f);
    if (data_len) fwrite(data, 1, data_len, f);
    fclose(f);
}

/* A checkpoint of lay with the given format metadata. */
static void save_with_format(const char *path, const model_layout_t *lay, const float *params,
                             const char *format) {
    st_entry_t *e = calloc((size_t)lay->n_tensors, sizeof *e);
    for (int t = 0; t < lay->n_tensors; t++) {
        e[t] = (st_entry_t){lay->t[t].name, "F32", lay->t[t].cols ? 2 : 1,
                            {lay->t[t].rows, lay->t[t].cols}, params + lay->t[t].offset};
    }
    const char *meta[] = {"format", format};
    CHECK(st_write(path, e, lay->n_tensors, meta, 1, err, sizeof err) == 0, "write: %s", err);
    free(e);
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
    expect_load_error(path, &k2, 1, "interest_extractor.W2.weight has shape [3, 4], this model "
                      "needs [2, 4] (another K? the file has K = 3 interests, this run K = 2)");
    expect_load_error(path, &k2, 0, "W2.weight has shape [3, 4]");
    /* Shape: another item count (another dataset). */
    model_layout_t items = fine;
    {
        model_config_t cfg = fine.cfg;
        cfg.n_items = 41;
        model_layout_build(&cfg, &items);
    }
    expect_load_error(path, &items, 1, "tensor interest_extractor.i_embeddings.weight has shape "
                      "[40, 8], this model needs [41, 8] (another dataset or item count? the "
                      "file has 40 item rows, this dataset 41)");
    /* Shape: another emb_size, another history_max. */
    {
        model_config_t cfg = fine.cfg;
        cfg.emb_size = 12;
        model_layout_t e12;
        model_layout_build(&cfg, &e12);
        expect_load_error(path, &e12, 1, "(another emb_size? the file's is 8, this run's 12)");
        cfg = fine.cfg;
        cfg.history_max = 7;
        model_layout_t h7;
        model_layout_build(&cfg, &h7);
        expect_load_error(path, &h7, 1, "interest_extractor.p_embeddings.weight has shape [6, 8], "
                          "this model needs [8, 8] (another history_max? the file's is 5, this "
                          "run's 7)");
    }
    /* dtype. */
    double d4[4] = {1, 2, 3, 4};
    st_entry_t e = {"interest_extractor.W1.bias", "F64", 1, {4}, d4};
    st_write(other, &e, 1, NULL, 0, err, sizeof err);
    expect_load_error(other, &pre, 0, "tensor interest_extractor.W1.bias is F64; this model needs F32");

    /* Format metadata: another version, another kind of file, something else. */
    save_with_format(other, &fine, a, "timirec-checkpoint-2");
    expect_load_error(other, &fine, 1, "checkpoint format version \"2\"; this build reads version \"1\"");
    save_with_format(other, &fine, a, "timirec-train-state-1");
    expect_load_error(other, &fine, 1, "this is a training state, for --resume 1");
    save_with_format(other, &fine, a, "pytorch");
    expect_load_error(other, &fine, 0, "format metadata \"pytorch\" is not a model checkpoint");
    save_with_format(other, &fine, a, CHECKPOINT_FORMAT); /* the right one loads */
    CHECK(checkpoint_load(other, &fine, b, 1, &n, err, sizeof err) == 0, "format ok: %s", err);
    save_with_format(other, &fine, a, "pt"); /* safetensors.torch.save_file's own tag */
    CHECK(checkpoint_load(other, &fine, b, 1, &n, err, sizeof err) == 0, "format pt: %s", err);

    /* Truncation anywhere (header or data): refused, parameters untouched. */
    {
        size_t len;
        char *whole = du_read_all(path, &len);
        int refused = 0, tries = 0;
        for (size_t cut = 0; cut < len; cut += 1 + cut / 3, tries++) {
            FILE *fp = fopen(other, "wb");
            fwrite(whole, 1, cut, fp);
            fclose(fp);
            float *p = malloc((size_t)fine.total * sizeof *p);
            for (int64_t i = 0; i < fine.total; i++) p[i] = 7.0f;
            int r = checkpoint_load(other, &fine, p, 0, NULL, err, sizeof err);
            int64_t changed = 0;
            for (int64_t i = 0; i < fine.total; i++) changed += p[i] != 7.0f;
            refused += r == -1 && changed == 0 && strstr(err, "fine.safetensors") == NULL &&
                       strstr(err, other) != NULL;
            free(p);
        }
        CHECK(refused == tries, "%d of %d truncations refused cleanly", refused, tries);
        /* The last tensor cut short names it. */
        FILE *fp = fopen(other, "wb");
        fwrite(whole, 1, len - 4, fp);
        fclose(fp);
        free(whole);
        expect_load_error(other, &fine, 1, "proj.proj_final.bias ends at byte");
        expect_load_error(other, &fine, 1, "truncated file?");
    }

    /* Damaged byte ranges, one tensor W1.bias [4] (F32: 16 bytes) and friends. */
    float d8[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const char *B = "\"interest_extractor.W1.bias\"";
    char h[512];
    snprintf(h, sizeof h, "{%s:{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", B);
    write_raw(other, h, d8, 12);
    expect_load_error(other, &pre, 0, "tensor interest_extractor.W1.bias ends at byte 16 of a 12-byte data section");
    snprintf(h, sizeof h, "{%s:{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,0]}}", B);
    write_raw(other, h, d8, 16);
    expect_load_error(other, &pre, 0, "tensor interest_extractor.W1.bias: data_offsets [16, 0] end before they begin");
    snprintf(h, sizeof h, "{%s:{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
             "\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", B);
    write_raw(other, h, d8, 16);
    expect_load_error(other, &pre, 0, "tensors interest_extractor.W1.bias and x overlap");
    snprintf(h, sizeof h, "{%s:{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", B);
    write_raw(other, h, d8, 24);
    expect_load_error(other, &pre, 0, "tensor interest_extractor.W1.bias starts at byte 8 but the header ends at 0 (a gap");
    snprintf(h, sizeof h, "{%s:{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", B);
    write_raw(other, h, d8, 20);
    expect_load_error(other, &pre, 0, "4 bytes after the last tensor");
    snprintf(h, sizeof h, "{%s:{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
             "%s:{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}", B, B);
    write_raw(other, h, d8, 32);
    expect_load_error(other, &pre, 0, "tensor interest_extractor.W1.bias appears twice");
    snprintf(h, sizeof h, "{%s:{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]}}", B);
    write_raw(other, h, d8, 8);
    expect_load_error(other, &pre, 0, "tensor interest_extractor.W1.bias is F16");
    snprintf(h, sizeof h, "{%s:{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}", B);
    write_raw(other, h, d8, 16);
    expect_load_error(other, &pre, 0, "bad safetensors header");
    snprintf(h, sizeof h, "{%s:{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},]", B);
    write_raw(other, h, d8, 16);
    expect_load_error(other, &pre, 0, "bad safetensors header");
    /* Header order need not be data order (PyTorch's writer sorts names, not offsets). */
    snprintf(h, sizeof h, "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]},"
             "%s:{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", B);
    write_raw(other, h, d8, 32);
    float *c2 = calloc((size_t)pre.total, sizeof *c2);
    CHECK(checkpoint_load(other, &pre, c2, 0, &n, err, sizeof err) == 0 && n == 1, "out-of-order header: %s", err);
    CHECK(memcmp(c2 + pre.t[pre.id[P_EXT_B1]].offset, d8, 16) == 0, "W1.bias bytes from [0, 16)");
    free(c2);
    expect_load_error("/nonexistent/x.safetensors", &pre, 1, "cannot open");
    free(a);
    free(b);
    free(c);
    du_rm_rf(dir);
    return tu_finish("test_checkpoint");
}
