build-valgrind/src/common.o: src/common.c include/timirec/common.h
include/timirec/common.h:
