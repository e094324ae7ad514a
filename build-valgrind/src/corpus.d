build-valgrind/src/corpus.o: src/corpus.c include/timirec/corpus.h \
 include/timirec/common.h include/timirec/text.h
include/timirec/corpus.h:
include/timirec/common.h:
include/timirec/text.h:
