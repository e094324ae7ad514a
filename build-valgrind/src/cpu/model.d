build-valgrind/src/cpu/model.o: src/cpu/model.c include/timirec/model.h \
 include/timirec/common.h include/timirec/rng.h
include/timirec/model.h:
include/timirec/common.h:
include/timirec/rng.h:
