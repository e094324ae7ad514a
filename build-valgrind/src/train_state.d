build-valgrind/src/train_state.o: src/train_state.c \
 include/timirec/train_state.h include/timirec/corpus.h \
 include/timirec/model.h include/timirec/options.h \
 include/timirec/common.h include/timirec/safetensors.h
include/timirec/train_state.h:
include/timirec/corpus.h:
include/timirec/model.h:
include/timirec/options.h:
include/timirec/common.h:
include/timirec/safetensors.h:
