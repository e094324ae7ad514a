build-valgrind/src/main.o: src/main.c include/timirec/common.h \
 include/timirec/corpus.h include/timirec/metrics.h \
 include/timirec/options.h include/timirec/prepare.h \
 include/timirec/run.h include/timirec/sampler.h include/timirec/sweep.h
include/timirec/common.h:
include/timirec/corpus.h:
include/timirec/metrics.h:
include/timirec/options.h:
include/timirec/prepare.h:
include/timirec/run.h:
include/timirec/sampler.h:
include/timirec/sweep.h:
