build-valgrind/src/options.o: src/options.c include/timirec/options.h \
 include/timirec/common.h include/timirec/text.h
include/timirec/options.h:
include/timirec/common.h:
include/timirec/text.h:
