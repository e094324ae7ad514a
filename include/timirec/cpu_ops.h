/* The CPU reference backend's layer operations, in two precisions from one source:
 * every function and cache type X exists as X_f (float: training) and X_d (double: the
 * gradient checks against finite differences). The declarations live in
 * include/timirec/cpu/<module>_decl.h and the bodies in src/cpu/<module>.inc, written once
 * with REAL and R(name); src/cpu/ops_f.c and ops_d.c include them with each precision.
 *
 * Conventions: row-major, shapes in comments; parameters and gradients are the flat buffers
 * of model.h (a tensor is params + model_offset(lay, P_...)); backward functions ADD into the
 * gradient buffer (the caller zeroes it once per step) and into input gradients they are
 * documented to accumulate. The padding id 0 marks padding in hist (mask = hist > 0). */
#ifndef TIMIREC_CPU_OPS_H
#define TIMIREC_CPU_OPS_H

#include <math.h>
#include <stdint.h>

#include "timirec/gemm.h"
#include "timirec/model.h"
#include "timirec/vmath.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Precision-specific helpers. */
#define gemm_f tmr_sgemm
#define gemm_d tmr_dgemm
#define gemm_bias_f tmr_sgemm_bias
#define gemm_bias_d tmr_dgemm_bias
#define exp_f expf
#define exp_d exp
#define log_f logf
#define log_d log
#define tanh_f tanhf
#define tanh_d tanh
#define sqrt_f sqrtf
#define sqrt_d sqrt
/* Branch-free exp, sigmoid and tanh (timirec/vmath.h): vectorised in float, libm in double. */
#define vexp_f vm_expf
#define vexp_d exp
#define vsigmoid_f vm_sigmoidf
#define vsigmoid_d vm_sigmoid
#define vtanh_f vm_tanhf
#define vtanh_d tanh

/* dropout_key_t and model_batch_t (the model's inputs) live in model.h: the CUDA backend
 * shares them. */

#define REAL float
#define R(name) name##_f
#include "timirec/cpu/acts_decl.h"
#include "timirec/cpu/layers_decl.h"
#include "timirec/cpu/extractor_decl.h"
#include "timirec/cpu/predictor_decl.h"
#include "timirec/cpu/heads_decl.h"
#include "timirec/cpu/model_step_decl.h"
#undef REAL
#undef R
#define REAL double
#define R(name) name##_d
#include "timirec/cpu/acts_decl.h"
#include "timirec/cpu/layers_decl.h"
#include "timirec/cpu/extractor_decl.h"
#include "timirec/cpu/predictor_decl.h"
#include "timirec/cpu/heads_decl.h"
#include "timirec/cpu/model_step_decl.h"
#undef REAL
#undef R

#ifdef __cplusplus
}
#endif
#endif
