/* Fuzz regression: every file of fuzz/corpus/<target>/ (seeds) and fuzz/regress/<target>/
 * (inputs that once crashed, hung or leaked) goes through its fuzz target (fuzz/targets.c) and
 * must come back; under `make asan` that also means no sanitizer report. The checkpoint seed
 * is checked to still load (the model layout and the seed agree), so the fuzzer starts from a
 * valid file.
 * `test_fuzz_regress --write-seed FILE` writes that seed (a checkpoint of the fuzz model). */
#include "test_util.h"
#include "targets.h"

#include "timirec/checkpoint.h"
#include "timirec/corpus_cache.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0, got;
    uint8_t *b = malloc(cap);
    while (b && (got = fread(b + len, 1, cap - len, f)) > 0)
        if ((len += got) == cap) b = realloc(b, cap *= 2);
    fclose(f);
    *n = len;
    return b;
}

/* Runs every regular file of dir through fn; returns the count (0 when dir is absent). */
static int replay(const char *dir, fuzz_target_fn fn) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[1024];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (e->d_name[0] == '.' || stat(path, &st) || !S_ISREG(st.st_mode)) continue;
        size_t n = 0;
        uint8_t *data = read_all(path, &n);
        CHECK(data != NULL, "cannot read %s", path);
        if (!data) continue;
        CHECK(fn(data, n) == 0, "%s: target returned non-zero", path);
        free(data);
        count++;
    }
    closedir(d);
    return count;
}

static model_layout_t g_lay;

static int write_seed(const char *path) {
    g_lay = fuzz_checkpoint_layout();
    float *p = malloc((size_t)g_lay.total * sizeof *p);
    for (int64_t i = 0; i < g_lay.total; i++) p[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    char err[512];
    int rc = checkpoint_save(path, &g_lay, p, "{\"K\": 2}", err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    free(p);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--write-seed") == 0) return write_seed(argv[2]) ? 1 : 0;
    /* Run from the repository root (make test) or from build/tests. */
    const char *root = access("fuzz/corpus", F_OK) == 0 ? "." : "../..";
    static const char *const targets[] = {"corpus", "corpus_cache", "config", "checkpoint"};
    for (size_t t = 0; t < sizeof targets / sizeof targets[0]; t++) {
        fuzz_target_fn fn = fuzz_target(targets[t]);
        char dir[512];
        snprintf(dir, sizeof dir, "%s/fuzz/corpus/%s", root, targets[t]);
        int seeds = replay(dir, fn);
        snprintf(dir, sizeof dir, "%s/fuzz/regress/%s", root, targets[t]);
        int regress = replay(dir, fn);
        printf("%-10s %3d seeds, %3d regression inputs\n", targets[t], seeds, regress);
        CHECK(seeds > 0, "no seeds for %s in %s/fuzz/corpus (run from the repository root)",
              targets[t], root);
    }
    /* The checkpoint seed loads strictly into the fuzz model. */
    char seed[512], err[1024];
    snprintf(seed, sizeof seed, "%s/fuzz/corpus/checkpoint/model.safetensors", root);
    g_lay = fuzz_checkpoint_layout();
    float *p = calloc((size_t)g_lay.total, sizeof *p);
    int n = 0;
    CHECK(checkpoint_load(seed, &g_lay, p, 1, &n, err, sizeof err) == 0 && n == g_lay.n_tensors,
          "checkpoint seed does not load: %s", err);
    free(p);
    /* The dataset cache seed maps with its checksum (rewrite it after a format change:
     * `timirec data` on a small dataset writes one, see fuzz/README.md). */
    snprintf(seed, sizeof seed, "%s/fuzz/corpus/corpus_cache/synth_12_users.bin", root);
    corpus_t c;
    CHECK(corpus_cache_map(seed, NULL, 1, &c, err, sizeof err) == 0 && c.n_users == 13,
          "dataset cache seed does not load: %s", err);
    corpus_free(&c);
    return tu_finish("test_fuzz_regress");
}
