build-valgrind/src/prepare.o: src/prepare.c include/timirec/prepare.h \
 include/timirec/common.h include/timirec/options.h include/timirec/rng.h \
 include/timirec/text.h
include/timirec/prepare.h:
include/timirec/common.h:
include/timirec/options.h:
include/timirec/rng.h:
include/timirec/text.h:
