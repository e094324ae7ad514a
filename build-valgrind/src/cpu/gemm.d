build-valgrind/src/cpu/gemm.o: src/cpu/gemm.c include/timirec/gemm.h \
 include/timirec/common.h src/cpu/gemm_builtin.inc
include/timirec/gemm.h:
include/timirec/common.h:
src/cpu/gemm_builtin.inc:
