# Sourced by the data-parallel shell tests (cli_dist.sh, cli_emu_dist.sh) after bin is set:
# SKIP (exit 77) without mpirun or without an MPI build; Open MPI's environment for this
# machine; the numbers the tests compare.
command -v mpirun >/dev/null 2>&1 || { echo "SKIP: mpirun not found (apt-get install openmpi-bin)"; exit 77; }
"$bin" info 2>/dev/null | grep -q '^MPI: built in' || { echo "SKIP: $bin was built without MPI"; exit 77; }
# OpenMPI refuses root without the first two; one OpenMP thread per rank (2 cores here); shared
# memory between the ranks without the cross-memory attach a container may forbid.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
# Every epoch of a JSON log as "loss metric metric ..." (the dev metrics, names dropped).
epoch_numbers() { grep '"event": "epoch"' "$1" | sed 's/.*"loss": \([^,]*\),.*"dev": {\([^}]*\)}.*/\1 \2/' | tr -d '",:' | sed 's/[A-Z]*@[0-9]*//g'; }
# Two such files agree: every epoch's loss within 1e-4 relative, its metrics within 0.002.
epochs_close() {
    [ -s "$1" ] && [ "$(wc -l < "$1")" = "$(wc -l < "$2")" ] &&
    paste -d' ' "$1" "$2" | awk '{ n = NF / 2; if (n < 2) exit 1; d = $1 - $(n + 1); if (!(d <= 1e-4 * $1 && -d <= 1e-4 * $1)) exit 1;
        for (i = 2; i <= n; i++) { d = $i - $(n + i); if (!(d <= 0.002 && -d <= 0.002)) exit 1 } }'
}
