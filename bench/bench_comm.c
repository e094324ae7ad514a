/* Seconds and bytes per comm_sum_f32 (the gradient all-reduce of data-parallel training) for
 * vectors of 4 KB .. 64 MB, on the ranks it is launched with:
 *   mpirun -np 2 build/bench/bench_comm
 * Each size: one untimed call, then repeats timed between two synchronising sums; the slowest
 * rank's time counts. Rank 0 prints a table and appends rows to bench/results/comm.csv
 * (bytes: the vector; sent_bytes: what each rank sent per call; GB/s: vector bytes / seconds).
 * As one process (`make bench`) the sum is a no-op: it says so and writes nothing. */
#include "timirec/comm.h"

#include "bench_util.h"

#include <stdint.h>

/* The slowest rank's elapsed time (nanoseconds, maximum over ranks). */
static double slowest(comm_t *c, double seconds) {
    int64_t ns = (int64_t)(seconds * 1e9);
    comm_max_i64(c, &ns, 1, "bench time");
    return (double)ns * 1e-9;
}

int main(int argc, char **argv) {
    comm_t *c = NULL;
    char err[512];
    if (comm_init(&argc, &argv, &c, err, sizeof err)) {
        fprintf(stderr, "bench_comm: %s\n", err);
        return 1;
    }
    const int rank = comm_rank(c), P = comm_size(c);
    if (P == 1) {
        printf("bench_comm: 1 process: comm_sum_f32 is a copy-free no-op, nothing to measure "
               "(mpirun -np N build/bench/bench_comm measures N ranks)\n");
        comm_finalize(c);
        return 0;
    }
    char device[256];
    bench_cpu_name(device, sizeof device);
    FILE *csv = NULL;
    if (rank == 0) {
        printf("bench_comm: %s\n%12s %12s %12s %10s\n", comm_describe(c), "bytes", "seconds",
               "sent_bytes", "GB/s");
        csv = fopen("bench/results/comm.csv", "a");
        if (csv && ftell(csv) == 0)
            fprintf(csv, "device,date,commit,ranks,bytes,seconds,sent_bytes,gbps\n");
    }
    const int64_t most = (int64_t)64 << 20;
    float *x = tmr_calloc((size_t)most, 1); /* zeros: repeated sums never overflow */
    for (int64_t bytes = 4096; bytes <= most; bytes *= 4) {
        const int64_t n = bytes / 4;
        const int reps = bytes <= (1 << 20) ? 50 : bytes <= (16 << 20) ? 10 : 4;
        comm_sum_f32(c, x, n, "bench warm-up");
        float sync = 0;
        comm_sum_f32(c, &sync, 1, "bench sync");
        const comm_stats_t s0 = comm_stats(c);
        const double t0 = tmr_now();
        for (int r = 0; r < reps; r++) comm_sum_f32(c, x, n, "bench sum");
        const double elapsed = tmr_now() - t0;
        const comm_stats_t s1 = comm_stats(c); /* before the time's maximum adds its bytes */
        const double sec = slowest(c, elapsed) / reps;
        const double sent = (double)(s1.bytes_sent - s0.bytes_sent) / reps;
        if (rank == 0) {
            printf("%12lld %12.6f %12.0f %10.3f\n", (long long)bytes, sec, sent, bytes / sec * 1e-9);
            if (csv)
                fprintf(csv, "%s,%s,%s,%d,%lld,%.6f,%.0f,%.3f\n", device, bench_date(),
                        bench_commit(), P, (long long)bytes, sec, sent, bytes / sec * 1e-9);
        }
    }
    if (csv) {
        fclose(csv);
        printf("(rows appended to bench/results/comm.csv)\n");
    }
    free(x);
    comm_finalize(c);
    return 0;
}
