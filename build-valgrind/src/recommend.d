build-valgrind/src/recommend.o: src/recommend.c \
 include/timirec/checkpoint.h include/timirec/model.h \
 include/timirec/common.h include/timirec/corpus.h \
 include/timirec/cpu_ops.h include/timirec/gemm.h include/timirec/vmath.h \
 include/timirec/cpu/extractor_decl.h \
 include/timirec/cpu/predictor_decl.h include/timirec/rng.h \
 include/timirec/cpu/heads_decl.h include/timirec/cpu/model_step_decl.h \
 include/timirec/options.h include/timirec/run.h \
 include/timirec/safetensors.h
include/timirec/checkpoint.h:
include/timirec/model.h:
include/timirec/common.h:
include/timirec/corpus.h:
include/timirec/cpu_ops.h:
include/timirec/gemm.h:
include/timirec/vmath.h:
include/timirec/cpu/extractor_decl.h:
include/timirec/cpu/predictor_decl.h:
include/timirec/rng.h:
include/timirec/cpu/heads_decl.h:
include/timirec/cpu/model_step_decl.h:
include/timirec/options.h:
include/timirec/run.h:
include/timirec/safetensors.h:
