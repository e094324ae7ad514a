build-valgrind/src/sweep.o: src/sweep.c include/timirec/sweep.h \
 include/timirec/common.h include/timirec/metrics.h \
 include/timirec/options.h include/timirec/run.h include/timirec/text.h
include/timirec/sweep.h:
include/timirec/common.h:
include/timirec/metrics.h:
include/timirec/options.h:
include/timirec/run.h:
include/timirec/text.h:
