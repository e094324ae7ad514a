/* The op table (tests/op_table.c) in its grad and parity modes (tests/op_harness.c):
 *  - grad: every op's double-precision CPU backward against central finite differences, at
 *    small shapes (one with odd sizes), histories of random length with one empty;
 *  - parity: every op's CUDA launchers against its float CPU version, device outputs poisoned
 *    with NaN first, accumulated gradients starting from the same random values, per-op
 *    tolerance (1e-5 normalised; parameter gradients summed over many rows gt_tol_rows;
 *    exact where the op promises it), at shapes from one history item to 512, emb 16 to 256,
 *    K 1 to 64, batch 1 to 256.
 * Built twice: test_gpu_ops (grad; parity on a GPU, SKIPped without one) and test_emu_ops
 * (parity against the host emulation at smaller shapes; grad is the same CPU code as in
 * test_gpu_ops and runs there).
 *
 *   test_gpu_ops [--only op1,op2] [--mode grad|parity]
 * TMR_EMU_FULL=1: the GPU's shapes in the emulation; TMR_SMALL_SHAPES=1: the emulation's on a
 * GPU (e.g. under compute-sanitizer). */
#include <stdio.h>
#include <string.h>

#include "op_table.h"
#include "test_util.h"
#include "timirec/common.h"

int main(int argc, char **argv) {
    const char *only = NULL, *mode = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--only") == 0) only = argv[i + 1];
        else if (strcmp(argv[i], "--mode") == 0) mode = argv[i + 1];
        else {
            fprintf(stderr, "usage: %s [--only op1,op2] [--mode grad|parity]\n", argv[0]);
            return 2;
        }
    }
    const double t0 = tmr_now();
    int parity_ran = 0, grad_ran = 0;
#ifdef TIMIREC_CUDA
    const int emulated = gpu_is_emulated();
#else
    const int emulated = 0;
#endif
    if ((!mode && !emulated) || (mode && strcmp(mode, "grad") == 0)) {
        CHECK(op_run_grad(only) == 0, "grad mode: failures above");
        grad_ran = 1;
    }
    if (!mode || strcmp(mode, "parity") == 0) {
#ifdef TIMIREC_CUDA
        char desc[512], err[512];
        gpu_ctx_t *g = NULL;
        if (gpu_device_count(desc, sizeof desc) < 1)
            printf("SKIP parity: %s\n", desc);
        else if (!(g = gpu_ctx_create(err, sizeof err)))
            printf("SKIP parity: %s\n", err);
        if (g) {
            gpu_debug_sync(1);
            printf("parity on %s\n", desc);
            CHECK(op_run_parity(g, only) == 0, "parity mode: failures above");
            gpu_ctx_free(g);
            parity_ran = 1;
        }
#else
        printf("SKIP parity: built without CUDA (no nvcc)\n");
#endif
    }
    printf("(%s%s%s; %.1f s)\n", grad_ran ? "grad" : "", grad_ran && parity_ran ? " + " : "",
           parity_ran ? "parity" : "", tmr_now() - t0);
    if (!grad_ran && !parity_ran) return TU_SKIP;
    return tu_finish(emulated ? "test_emu_ops" : "test_gpu_ops");
}
