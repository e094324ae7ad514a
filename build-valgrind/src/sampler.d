build-valgrind/src/sampler.o: src/sampler.c include/timirec/sampler.h \
 include/timirec/corpus.h include/timirec/common.h include/timirec/rng.h
include/timirec/sampler.h:
include/timirec/corpus.h:
include/timirec/common.h:
include/timirec/rng.h:
