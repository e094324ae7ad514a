#!/bin/sh
# Data-parallel training on the CUDA backend, run on the host emulation (emu/): the command
# line built over the emulated device (build/emu/timirec) under `mpirun -np 2 ... --gpu 0`, each
# rank's batch slice stepped on its (emulated) device and the gradients summed through the host
# (kernels/trainer_backend.cu cuda_dist_step):
#  * the log says so; epoch losses within 1e-4 relative and dev metrics within 0.002 of one
#    emulated-GPU process and of one CPU process;
#  * touched-rows and whole-table exchanges give the same checkpoint bytes;
#  * LazyAdam on GPU ranks is refused with the reason.
# SKIP without mpirun, without an MPI build, or without the emulated binary.
bin=${1:-bin/timirec}
emu=${TIMIREC_TEST_DIR:-build/tests}/../emu/timirec
. tests/mpi_common.sh
[ -x "$emu" ] && "$emu" info 2>/dev/null | grep -q '^MPI: built in' || { echo "SKIP: no emulated binary with MPI at $emu"; exit 77; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }

"$bin" synth --out "$tmp/data" --dataset toy --users 100 --items 80 --n_clusters 5 --seq_len 10 --negatives 20 >/dev/null || { echo "FAIL: synth"; exit 1; }
toy="--model_name TiMiRec --path $tmp/data --dataset toy --epoch 2 --batch_size 50 --emb_size 16 --history_max 8 --stage finetune --n_layers 2 --temp 0.5 --check_epoch 0"
ck="TiMiRec/TiMiRec__toy__0__lr=0.001__l2=0__emb_size=16__attn_size=8__K=2__temp=0.5__add_pos=1__add_trm=1__n_layers=2.safetensors"
# name, then the command: trains in $tmp/run (checkpoints record their paths), moved to $tmp/NAME
run() {
    name=$1; shift
    rm -rf "$tmp/run"
    "$@" --model_dir "$tmp/run/" --log_dir "$tmp/run/" --json_log "$tmp/run/log.jsonl" > "$tmp/$name.out" 2>&1
    rc=$?
    mv "$tmp/run" "$tmp/$name"
    return $rc
}
run cpu1 "$bin" $toy
run gpu1 "$emu" $toy --gpu 0
run gpu2 mpirun --oversubscribe -np 2 "$emu" $toy --gpu 0; rc=$?
check "2 emulated GPU ranks exit 0 and log the host exchange" \
    "[ $rc -eq 0 ] && grep -q '^Backend: CUDA: emulated' $tmp/gpu2.out && grep -q '^Data-parallel: MPI .*2 ranks.*GPU gradients summed through the host' $tmp/gpu2.out"
for n in cpu1 gpu1 gpu2; do epoch_numbers "$tmp/$n/log.jsonl" > "$tmp/$n.num"; done
check "2 GPU ranks = 1 GPU process (loss 1e-4 rel, dev 0.002): $(tr '\n' ' ' < $tmp/gpu2.num)" "epochs_close $tmp/gpu1.num $tmp/gpu2.num"
check "2 GPU ranks = 1 CPU process" "epochs_close $tmp/cpu1.num $tmp/gpu2.num"
TIMIREC_GRAD_EXCHANGE=rows run rows mpirun --oversubscribe -np 2 -x TIMIREC_GRAD_EXCHANGE "$emu" $toy --gpu 0
TIMIREC_GRAD_EXCHANGE=dense run dense mpirun --oversubscribe -np 2 -x TIMIREC_GRAD_EXCHANGE "$emu" $toy --gpu 0
check "touched rows = whole table on GPU ranks, byte for byte" \
    "grep -q 'exchanged as touched rows' $tmp/rows.out && grep -q 'exchanged as dense' $tmp/dense.out && cmp -s $tmp/rows/$ck $tmp/dense/$ck"
run lazy mpirun --oversubscribe -np 2 "$emu" $toy --gpu 0 --optimizer LazyAdam; rc=$?
check "LazyAdam on GPU ranks is refused with the reason" "[ $rc -ne 0 ] && grep -q 'takes --optimizer Adam' $tmp/lazy.out"
exit $fail
