build-valgrind/src/cpu/ops_f.o: src/cpu/ops_f.c include/timirec/cpu_ops.h \
 include/timirec/gemm.h include/timirec/model.h include/timirec/vmath.h \
 include/timirec/common.h include/timirec/cpu/extractor_decl.h \
 include/timirec/cpu/predictor_decl.h include/timirec/rng.h \
 include/timirec/cpu/heads_decl.h include/timirec/cpu/model_step_decl.h \
 src/cpu/extractor.inc src/cpu/predictor.inc src/cpu/heads.inc \
 src/cpu/model_step.inc
include/timirec/cpu_ops.h:
include/timirec/gemm.h:
include/timirec/model.h:
include/timirec/vmath.h:
include/timirec/common.h:
include/timirec/cpu/extractor_decl.h:
include/timirec/cpu/predictor_decl.h:
include/timirec/rng.h:
include/timirec/cpu/heads_decl.h:
include/timirec/cpu/model_step_decl.h:
src/cpu/extractor.inc:
src/cpu/predictor.inc:
src/cpu/heads.inc:
src/cpu/model_step.inc:
