build-valgrind/src/metrics.o: src/metrics.c include/timirec/metrics.h \
 include/timirec/common.h
include/timirec/metrics.h:
include/timirec/common.h:
