build-valgrind/src/synth.o: src/synth.c include/timirec/common.h \
 include/timirec/options.h include/timirec/prepare.h \
 include/timirec/rng.h
include/timirec/common.h:
include/timirec/options.h:
include/timirec/prepare.h:
include/timirec/rng.h:
