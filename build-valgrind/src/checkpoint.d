build-valgrind/src/checkpoint.o: src/checkpoint.c \
 include/timirec/checkpoint.h include/timirec/model.h \
 include/timirec/common.h include/timirec/safetensors.h
include/timirec/checkpoint.h:
include/timirec/model.h:
include/timirec/common.h:
include/timirec/safetensors.h:
