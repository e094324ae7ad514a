/* The op table and its harness (in the spirit of ggml's test-backend-ops): each layer op of the
 * model is registered ONCE in op_table[] (tests/op_table.c) with its tensors, the shapes it is
 * checked and timed at, its CPU reference (float and double: cpu_ops.h) and its CUDA launcher
 * (gpu_ops.h; the host emulation in the emulated build). Registered: the extractor's ops
 * (embedding +/- positions, Linear +/- bias, attention, add + LayerNorm +/- row mask,
 * feed-forward, interest attention), the embedding scatter's run-length cases, the GRU, the
 * projection MLP and its dropout mask, the single heads (user vector, candidate scores,
 * pretrain evaluation scores, ranking loss, distillation) and Adam. Still checked by their own
 * tests: the pretrain training scores (an int argmax with a near-tie rule) and the fused heads
 * (test_gpu_heads), the scatter's error bound and determinism across emulation orders
 * (test_gpu_scatter), top-K (test_gpu_topk: a host-side API over a problem struct, item lists
 * with tie rules and error returns, not device tensors). The harness
 * (tests/op_harness.c) runs it in three modes:
 *  - grad:   the double CPU op's backward against central finite differences of the loss
 *            sum_o <out_o, dout_o> (every output with an upstream gradient), per input that
 *            has a gradient (tests/gradcheck.h);
 *  - parity: the CUDA launchers against the float CPU op on the same random inputs, device
 *            outputs poisoned with NaN first, accumulated gradients starting from the same
 *            random values on both sides; NaN fails first, then the normalised error against
 *            the op's tolerance (tests/gpu_test_util.h);
 *  - perf:   median time over repeats after a warm-up, GB/s and GFLOP/s, and on a GPU the
 *            fraction of the device's roofline (bench/results/device.csv, bench_device).
 * tests/test_gpu_ops.c runs grad and parity (`make test`: test_gpu_ops natively, where parity
 * SKIPs without a GPU, and test_emu_ops against the emulation); bench/bench_ops.c runs perf on
 * the CPU (`make bench`), bench/bench_gpu_ops.c on the GPU (`make bench`, `make gpu-check`).
 *
 * Adding an op: one entry in op_table.c: an enum of its tensors, their op_tensor_t list, the
 * CPU call written once for both precisions (CPU_WRAP), the GPU call, the shapes (a
 * generator per mode; none for grad when the op has no backward) and the cost (bytes and
 * flops) for perf. A scalar result (a loss) is a tensor of dims "1" with an upstream gradient
 * of constant 1 (lo = hi = 1). An op over the model's flat parameter buffer (Adam, the
 * projection) names its layout (op_t.layout) and uses dims "W" for the buffer; an op without
 * a double version (Adam, the dropout mask) leaves fwd_d NULL. */
#ifndef TIMIREC_TEST_OP_TABLE_H
#define TIMIREC_TEST_OP_TABLE_H

#include <stdint.h>

#include "timirec/gpu_ops.h"

/* One shape of an op. Tensor dims (op_tensor_t.dims) name these fields by letter:
 * B L d a K C N f T W, n = B * L, P = L + 1 (position rows), or by word: layers, hidden
 * (= layers - 1), steps, W4 (W rounded up to a multiple of 4: a float4-aligned stride);
 * digits are literal factors. */
typedef struct {
    int B, L, d, a, K, C, N, f;
    double temp; /* the distillation's temperature */
    int lens;    /* the histories' lengths (OP_LEN_*) */
    int layers;  /* the projection's layers (n_layers); the layout's for Adam */
    int train;   /* the projection in training mode (dropout p) */
    double p;    /* dropout probability */
    int steps;   /* Adam's steps */
    int runs;    /* the scatter's run-length pattern */
    int64_t T;   /* packed rows (the sum of the lengths): set by the harness when L > 0 */
    int64_t W;   /* the op's flat parameter buffer (op_t.layout): set by the harness */
} op_shape_t;

/* History lengths of a batch: random 1..L with the last row of 3 or more empty
 * (gt_histories), all L, or one row of L among rows of 1..3. */
enum { OP_LEN_MIXED, OP_LEN_EQUAL, OP_LEN_ONE_LONG };

/* Which shapes a generator returns: grad checks (small), parity on a GPU, parity in the host
 * emulation (smaller), perf, and perf's smoke run (one small shape). */
typedef enum { OPM_GRAD, OPM_PARITY_GPU, OPM_PARITY_EMU, OPM_PERF, OPM_PERF_SMOKE } op_mode_t;

#define OP_MAX_SHAPES 16
#define OP_MAX_TENSORS 24

/* What a tensor is to the op (and so how the harness fills and compares it). */
typedef enum {
    T_IN,       /* float input (or upstream gradient): uniform in [lo, hi) */
    T_IDS,      /* int32 input: fill says how */
    T_OUT,      /* written by the op: poisoned (NaN) first, compared */
    T_GRAD_ADD, /* gradient the op ADDS into: random start (same both sides), compared */
    T_SCRATCH,  /* saved activation or scratch (of one side or both): poisoned, not compared */
} op_kind_t;

/* T_IDS fills: the histories of a batch (gt_histories: lengths 1..L, the last row of a batch
 * of 3 or more empty, items in 1..N-1, right-padded with 0) and their positions; candidate
 * ids uniform in 0..min(N, 40)-1 (repeats: table rows that collect several gradients). */
typedef enum { F_NONE, F_HIST, F_POS, F_CAND, F_OP } op_fill_t; /* F_OP: op_t.fill_ids */

enum {
    OPT_ROWS = 1,      /* parity tolerance widened for a sum over n = B L rows (gt_tol_rows) */
    OPT_EXACT = 2,     /* parity: bit-identical */
    OPT_ZERO_GRAD = 4, /* grad: zero in exact arithmetic (softmax shift invariance) */
    OPT_EMPTY_ZERO = 8, /* the last batch row (an empty history) must come out exactly 0 */
    OPT_FANIN = 16,     /* T_IN range scaled by 1 / sqrt(last dim) (a weight's fan-in) */
    OPT_ROWS_T = 32,    /* as OPT_ROWS, for a sum over the T packed rows */
    OPT_INT32 = 64,     /* T_OUT of int32: parity compares it exactly as integers */
    OPT_PER_PARAM = 128, /* a "W" buffer: parity also compares each tensor of op_t.layout */
    OPT_INV_SQRT_D = 256 /* T_IN range scaled by 1 / sqrt(d) */
};

typedef struct {
    const char *name;
    const char *dims;  /* "B,L,d": the product of the named sizes */
    op_kind_t kind;
    float lo, hi;      /* T_IN, T_GRAD_ADD start: uniform range (default [-1, 1)) */
    op_fill_t fill;    /* T_IDS */
    /* T_IN: the tensor holding its gradient (grad mode checks it); T_OUT: the tensor holding
     * its upstream gradient (the output is part of the grad-mode loss). */
    const char *grad;
    /* T_GRAD_ADD of a table: the T_IDS tensor that scatters into it. Parity: rows with at
     * most 32 source rows exact, longer runs gt_tol_rows (gt_compare_scatter). */
    const char *ids;
    int flags;         /* OPT_* */
    double tol;        /* parity: this tensor's tolerance (0: the op's) */
} op_tensor_t;

/* One instance: the shape and a buffer per tensor (host float or double, or device), and the
 * batch's GRU packing of its history lengths (predictor_decl.h "Packed order"): host arrays,
 * and step_off on the device for a GPU run. */
typedef struct {
    op_shape_t s;
    void *t[OP_MAX_TENSORS];
    int n_steps;
    const int32_t *batch_sizes; /* (L) */
    const int64_t *step_off;    /* (L + 1) */
    const int64_t *step_off_dev;
} op_case_t;

typedef void (*op_cpu_fn)(op_case_t *c);
typedef void (*op_gpu_fn)(gpu_ctx_t *g, op_case_t *c);

typedef struct {
    const char *name;
    const op_tensor_t *t;
    int nt;
    int (*shapes)(op_mode_t mode, op_shape_t *out); /* up to OP_MAX_SHAPES; returns the count */
    /* bwd NULL: the forward does it all; fwd_d NULL: no double version (no grad mode, no
     * float-vs-double check before CPU perf) */
    op_cpu_fn fwd_f, bwd_f, fwd_d, bwd_d;
    op_gpu_fn fwd_gpu, bwd_gpu;                     /* NULL in a build without CUDA */
    double tol;                                     /* parity: normalised error */
    /* Compulsory traffic in bytes (each input read once, each output written once) of the
     * forward (bwd 0) or backward (bwd 1), and its useful flops in *flops. */
    double (*cost)(const op_shape_t *s, int bwd, double *flops);
    /* Optional parity check of what the two sides keep in different forms: derive(cpu, gpu,
     * got, want) fills got from the GPU's tensors (host copies in gpu) and want from the
     * CPU's, compared as the tensor named derive_of (buffers of its size) with the op's
     * tolerance. */
    void (*derive)(const op_case_t *cpu, const op_case_t *gpu, float *got, float *want);
    const char *derive_of;
    /* Optional: the model layout of an op over the flat parameter buffer (dims "W"). */
    const model_layout_t *(*layout)(const op_shape_t *s);
    /* F_OP ids: fills the tensor's ids (tag: distinct per op and shape). */
    void (*fill_ids)(const op_shape_t *s, uint32_t tag, int32_t *ids);
} op_t;

extern const op_t op_table[];
extern const int op_count;

/* Elements of tensor dims for shape s. */
int64_t op_numel(const char *dims, const op_shape_t *s);

/* The modes; each returns the number of failed checks (0: all passed). only: NULL, or a
 * comma-separated list of parts of op names ("linear" runs linear and linear_nobias). */
int op_run_grad(const char *only);
int op_run_parity(gpu_ctx_t *g, const char *only);
/* Times the CPU ops (g NULL; each first checked float against double, the failures counted)
 * or the GPU launchers. PERF_QUICK: the first perf shape only; PERF_SMOKE: the smoke shape,
 * one call each, no rows written. csv: NULL or a file to append rows to (GPU: device,date,
 * commit,kernel,shape,us,gbps,gflops,fraction_of_ceiling; CPU: bench_ops's ops.csv columns). */
typedef enum { PERF_FULL, PERF_QUICK, PERF_SMOKE } op_perf_t;
int op_run_perf(gpu_ctx_t *g, const char *only, op_perf_t level, const char *csv);

#endif
