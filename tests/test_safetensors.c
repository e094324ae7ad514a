/* safetensors: round trip, metadata, the layout of the bytes (what PyTorch reads), and every
 * kind of damage (truncation, bad header, size/dtype mismatch, overlap, random byte flips)
 * refused with a message naming the file or the tensor, never a crash. */
#include "test_util.h"
#include "data_util.h"
#include "timirec/rng.h"
#include "timirec/safetensors.h"

static char err[1024];

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

static void expect_bad(const char *path, const char *frag) {
    st_file_t f;
    err[0] = 0;
    int rc = st_read(path, &f, err, sizeof err);
    CHECK(rc == -1, "expected an error containing '%s'", frag);
    if (rc == 0) st_free(&f);
    CHECK(strstr(err, frag) != NULL, "message '%s' lacks '%s'", err, frag);
}

int main(void) {
    const char *dir = du_tempdir("st");
    char path[512];
    snprintf(path, sizeof path, "%s/a.safetensors", dir);
    float a[6];
    double b[3];
    int32_t c[4];
    for (int i = 0; i < 6; i++) a[i] = rng_uniform01(rng_u32(1, RNG_TEST, 0, (uint64_t)i, 0)) - 0.5f;
    for (int i = 0; i < 3; i++) b[i] = 1.0 / (i + 3);
    for (int i = 0; i < 4; i++) c[i] = (int32_t)rng_u32(1, RNG_TEST, 1, (uint64_t)i, 0);
    st_entry_t e[3] = {{"interest_extractor.W1.weight", "F32", 2, {2, 3}, a},
                       {"x\"quoted\\name", "F64", 1, {3}, b},
                       {"ids", "I32", 1, {4}, c}};
    const char *meta[] = {"format", "timirec", "config", "{\"K\": 2}"};
    CHECK(st_write(path, e, 3, meta, 2, err, sizeof err) == 0, "write: %s", err);
    st_file_t f;
    size_t header_end = 0;
    int rc = st_read(path, &f, err, sizeof err);
    CHECK(rc == 0, "read: %s", err);
    if (rc == 0) {
        CHECK(f.n_tensors == 3 && f.n_meta == 2, "counts %d %d", f.n_tensors, f.n_meta);
        const st_tensor_t *t = st_find(&f, "interest_extractor.W1.weight");
        CHECK(t && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && strcmp(t->dtype, "F32") == 0,
              "W1 entry");
        if (t) CHECK(memcmp(st_data(&f, t), a, sizeof a) == 0, "W1 bytes");
        t = st_find(&f, "x\"quoted\\name");
        CHECK(t && memcmp(st_data(&f, t), b, sizeof b) == 0, "escaped name and F64 bytes");
        t = st_find(&f, "ids");
        CHECK(t && st_numel(t) == 4 && memcmp(st_data(&f, t), c, sizeof c) == 0, "I32 bytes");
        CHECK(st_meta(&f, "config") && strcmp(st_meta(&f, "config"), "{\"K\": 2}") == 0, "metadata");
        CHECK(st_meta(&f, "absent") == NULL, "absent metadata");
        CHECK(f.data_start % 8 == 0, "header padded to 8 bytes");
        header_end = f.data_start;
        /* Layout: the first tensor starts right after the header, little-endian floats. */
        CHECK(memcmp(f.buf + f.data_start, a, sizeof a) == 0, "data section order");
        st_free(&f);
    }
    /* No temporary file left behind. */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp", dir);
    CHECK(system(cmd) != 0, "temporary file left in %s", dir);

    /* Damage. */
    size_t len;
    char *whole = du_read_all(path, &len);
    char bad[512];
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    for (size_t cut = 0; cut < len; cut += (cut < 16 ? 1 : 7)) { /* every truncation point */
        FILE *fp = fopen(bad, "wb");
        fwrite(whole, 1, cut, fp);
        fclose(fp);
        st_file_t g;
        int r = st_read(bad, &g, err, sizeof err);
        CHECK(r == -1, "truncated at %zu bytes of %zu accepted", cut, len);
        if (r == 0) st_free(&g);
    }
    expect_bad("/nonexistent/x.safetensors", "cannot open");
    write_raw(bad, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", a, 16);
    expect_bad(bad, "tensor w: data_offsets [0, 12] hold 12 bytes");
    write_raw(bad, "{\"w\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]}}", a, 8);
    expect_bad(bad, "tensor w has unknown dtype Q7");
    write_raw(bad, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", a, 8);
    expect_bad(bad, "tensor w ends at byte 16");
    write_raw(bad, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", a, 12);
    expect_bad(bad, "overlap");
    write_raw(bad, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", a, 8);
    expect_bad(bad, "tensor w lacks");
    write_raw(bad, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} trailing", a, 8);
    expect_bad(bad, "text after the closing brace");
    write_raw(bad, "[1,2]", a, 8);
    expect_bad(bad, "bad safetensors header");
    /* A NUL inside a name would make "w\u0000x" read as "w". */
    write_raw(bad, "{\"w\\u0000x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", a, 8);
    expect_bad(bad, "\\u0000 in a string");
    /* Random byte flips in the header: load or refuse, never crash. */
    int loaded = 0, refused = 0;
    for (uint64_t trial = 0; trial < 2000; trial++) {
        char *copy = malloc(len);
        memcpy(copy, whole, len);
        uint32_t w = rng_u32(3, RNG_TEST, 2, trial, 0);
        size_t at = 8 + w % (header_end - 8); /* anywhere in the header */
        copy[at] ^= (char)(1 + (w >> 24) % 255);
        FILE *fp = fopen(bad, "wb");
        fwrite(copy, 1, len, fp);
        fclose(fp);
        free(copy);
        st_file_t g;
        if (st_read(bad, &g, err, sizeof err) == 0) {
            loaded++;
            st_free(&g);
        } else {
            refused++;
            if (!strstr(err, "bad.safetensors")) CHECK(0, "message without the file: %s", err);
        }
    }
    printf("header flips: %d loaded, %d refused\n", loaded, refused);
    free(whole);
    du_rm_rf(dir);
    return tu_finish("test_safetensors");
}
