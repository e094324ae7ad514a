build-valgrind/src/memplan.o: src/memplan.c include/timirec/memplan.h \
 include/timirec/corpus.h include/timirec/model.h \
 include/timirec/trainer.h include/timirec/cpu_ops.h \
 include/timirec/gemm.h include/timirec/vmath.h include/timirec/common.h \
 include/timirec/cpu/extractor_decl.h \
 include/timirec/cpu/predictor_decl.h include/timirec/rng.h \
 include/timirec/cpu/heads_decl.h include/timirec/cpu/model_step_decl.h \
 include/timirec/metrics.h include/timirec/sampler.h
include/timirec/memplan.h:
include/timirec/corpus.h:
include/timirec/model.h:
include/timirec/trainer.h:
include/timirec/cpu_ops.h:
include/timirec/gemm.h:
include/timirec/vmath.h:
include/timirec/common.h:
include/timirec/cpu/extractor_decl.h:
include/timirec/cpu/predictor_decl.h:
include/timirec/rng.h:
include/timirec/cpu/heads_decl.h:
include/timirec/cpu/model_step_decl.h:
include/timirec/metrics.h:
include/timirec/sampler.h:
