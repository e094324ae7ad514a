build-valgrind/src/safetensors.o: src/safetensors.c \
 include/timirec/safetensors.h include/timirec/common.h \
 include/timirec/text.h
include/timirec/safetensors.h:
include/timirec/common.h:
include/timirec/text.h:
