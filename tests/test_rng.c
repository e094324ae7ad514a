/* Philox4x32-10 against the published known-answer vectors (Random123 kat_vectors), and the
 * derived helpers: uniformity of rng_below, distinct streams per purpose/epoch/index. */
#include "test_util.h"
#include "timirec/rng.h"

#include <stdint.h>

static void kat(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1,
                uint32_t e0, uint32_t e1, uint32_t e2, uint32_t e3) {
    philox4x32_t ctr = {{c0, c1, c2, c3}};
    philox4x32_t out = philox4x32_10(ctr, k0, k1);
    CHECK(out.v[0] == e0 && out.v[1] == e1 && out.v[2] == e2 && out.v[3] == e3,
          "philox(%08x %08x %08x %08x | %08x %08x) = %08x %08x %08x %08x", c0, c1, c2, c3, k0, k1,
          out.v[0], out.v[1], out.v[2], out.v[3]);
}

int main(void) {
    kat(0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8);
    kat(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d,
        0x41c83b0e, 0xa20bc7c6, 0x6d5451fd);
    kat(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09,
        0x94fdcceb, 0x5001e420, 0x24126ea1);

    /* The mapping: draw d of (seed, purpose, epoch, index) is word d%4 of block d/4. */
    uint64_t seed = 0x0123456789abcdefull;
    philox4x32_t c2 = {{(uint32_t)0x1122334455ull, (uint32_t)(0x1122334455ull >> 32), 7u, 2u | (1u << 8)}};
    philox4x32_t want = philox4x32_10(c2, (uint32_t)seed, (uint32_t)(seed >> 32));
    CHECK(rng_u32(seed, 2, 7, 0x1122334455ull, 6) == want.v[2], "draw 6 is word 2 of block 1");

    /* A stream reads words 0, 1, 2, ... of its element, whatever block it starts in. */
    rng_stream_t st = rng_stream(seed, 3, 9, 77, 2);
    int stream_bad = 0;
    for (uint32_t d = 2; d < 14; d++) stream_bad += rng_stream_u32(&st) != rng_u32(seed, 3, 9, 77, d);
    CHECK(stream_bad == 0 && st.draw == 14, "stream words differ from rng_u32 (%d)", stream_bad);

    /* Distinct streams differ. */
    CHECK(rng_u32(1, RNG_TRAIN_NEG, 0, 5, 0) != rng_u32(1, RNG_SHUFFLE, 0, 5, 0), "purpose");
    CHECK(rng_u32(1, RNG_TRAIN_NEG, 0, 5, 0) != rng_u32(1, RNG_TRAIN_NEG, 1, 5, 0), "epoch");
    CHECK(rng_u32(1, RNG_TRAIN_NEG, 0, 5, 0) != rng_u32(1, RNG_TRAIN_NEG, 0, 6, 0), "index");
    CHECK(rng_u32(1, RNG_TRAIN_NEG, 0, 5, 0) != rng_u32(2, RNG_TRAIN_NEG, 0, 5, 0), "seed");

    /* rng_below: in range, and uniform (chi-square over 10 bins of a non-power-of-two range). */
    enum { RANGE = 10, N = 200000 };
    long counts[RANGE] = {0};
    int out_of_range = 0;
    for (uint64_t i = 0; i < N; i++) {
        uint32_t draw = 0;
        uint32_t v = rng_below(42, RNG_TEST, 0, i, &draw, RANGE);
        if (v >= RANGE) out_of_range++;
        else counts[v]++;
    }
    CHECK(out_of_range == 0, "%d values out of range", out_of_range);
    double chi2 = 0;
    for (int b = 0; b < RANGE; b++) {
        double e = (double)N / RANGE;
        chi2 += (counts[b] - e) * (counts[b] - e) / e;
    }
    /* 9 degrees of freedom: P(chi2 > 27.9) = 0.001. */
    CHECK(chi2 < 27.9, "chi-square %.2f for rng_below(10)", chi2);

    /* A range whose threshold rejects often: 2^31 + 1 rejects almost half the words. */
    int bad = 0;
    uint32_t big = 0x80000001u;
    for (uint64_t i = 0; i < 1000; i++) {
        uint32_t draw = 0;
        uint32_t v = rng_below(7, RNG_TEST, 1, i, &draw, big);
        if (v >= big || draw < 1) bad++;
    }
    CHECK(bad == 0, "%d bad draws for range 2^31+1", bad);

    /* rng_uniform01 in [0, 1) at the extremes. */
    CHECK(rng_uniform01(0xffffffffu) < 1.0f, "max word below 1");
    CHECK(rng_uniform01(0) == 0.0f, "zero word gives 0");
    double mean = 0;
    for (uint64_t i = 0; i < 100000; i++) mean += rng_uniform01(rng_u32(3, RNG_TEST, 2, i, 0));
    mean /= 100000;
    CHECK(fabs(mean - 0.5) < 0.005, "uniform mean %.4f", mean);

    return tu_finish("test_rng");
}
