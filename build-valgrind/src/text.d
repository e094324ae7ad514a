build-valgrind/src/text.o: src/text.c include/timirec/text.h \
 include/timirec/common.h
include/timirec/text.h:
include/timirec/common.h:
