/* The layer operations in one precision: the module bodies (src/cpu/<module>.inc) included once per precision. */
#include "timirec/cpu_ops.h"

#include "timirec/common.h"
#include "timirec/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define REAL float
#define R(name) name##_f
#include "acts.inc"
#include "layers.inc"
#include "extractor.inc"
#include "predictor.inc"
#include "heads.inc"
#include "model_step.inc"
