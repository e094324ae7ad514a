/* Counter-based randomness: Philox4x32-10 (Salmon et al., SC'11; the generator cuRAND calls
 * PHILOX4_32_10), keyed so that every random number in a run is a pure function of
 *   (seed, purpose, epoch, index, draw)
 * and the CPU and a CUDA kernel produce the very same negatives, shuffles and dropout masks.
 *
 * Mapping (fixed: changing it changes every run):
 *   key     = { low 32 bits of seed, high 32 bits of seed }
 *   counter = { low 32 bits of index, high 32 bits of index, epoch,
 *               purpose | (draw / 4) << 8 }
 *   value   = word (draw % 4) of philox4x32_10(counter, key)
 * so one (purpose, epoch, index) element owns a stream of 4 * 2^24 words.
 *
 * Everything here is inline and marked host+device: the kernels include this header. */
#ifndef TIMIREC_RNG_H
#define TIMIREC_RNG_H

#include "timirec/common.h"

/* What a stream is for; the 8 low bits of counter word 3. Never renumber. */
enum rng_purpose {
    RNG_TRAIN_NEG = 1,    /* training negatives: index = instance * num_neg + j */
    RNG_SHUFFLE = 2,      /* epoch shuffle: index = instance (sort key) */
    RNG_DROPOUT = 3,      /* dropout masks: index = element */
    RNG_INIT = 4,         /* parameter initialisation: index = element, epoch = tensor id */
    RNG_PREPARE_NEG = 5,  /* prepare: eval negatives; epoch 0 = test, 1 = dev */
    RNG_SYNTH = 6,        /* synthetic data generator */
    RNG_EVAL_USERS = 7,   /* --eval_users sample: epoch = phase, index = user id (sort key) */
    RNG_TEST = 255        /* tests */
};

typedef struct {
    uint32_t v[4];
} philox4x32_t;

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

TMR_HD philox4x32_t philox4x32_10(philox4x32_t ctr, uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)PHILOX_M0 * ctr.v[0];
        uint64_t p1 = (uint64_t)PHILOX_M1 * ctr.v[2];
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        philox4x32_t out;
        out.v[0] = hi1 ^ ctr.v[1] ^ k0;
        out.v[1] = lo1;
        out.v[2] = hi0 ^ ctr.v[3] ^ k1;
        out.v[3] = lo0;
        ctr = out;
    }
    return ctr;
}

/* The four words of block (draw / 4) of element `index`. */
TMR_HD philox4x32_t rng_block(uint64_t seed, uint32_t purpose, uint32_t epoch, uint64_t index,
                              uint32_t block) {
    philox4x32_t ctr;
    ctr.v[0] = (uint32_t)index;
    ctr.v[1] = (uint32_t)(index >> 32);
    ctr.v[2] = epoch;
    ctr.v[3] = (purpose & 0xFFu) | (block << 8);
    return philox4x32_10(ctr, (uint32_t)seed, (uint32_t)(seed >> 32));
}

/* The draw-th 32-bit word of element `index`'s stream. */
TMR_HD uint32_t rng_u32(uint64_t seed, uint32_t purpose, uint32_t epoch, uint64_t index,
                        uint32_t draw) {
    philox4x32_t b = rng_block(seed, purpose, epoch, index, draw >> 2);
    return b.v[draw & 3u];
}

/* Uniform float in [0, 1) with 24 random bits (exactly representable, same on every device). */
TMR_HD float rng_uniform01(uint32_t word) {
    return (float)(word >> 8) * (1.0f / 16777216.0f);
}

/* One element's stream read word by word, each Philox block computed once for its 4 words.
 * Word n of the stream is rng_u32(seed, purpose, epoch, index, n). */
typedef struct {
    uint64_t seed, index;
    uint32_t purpose, epoch;
    uint32_t draw;        /* next word to read */
    uint32_t block;       /* block held in `words` (UINT32_MAX: none yet) */
    philox4x32_t words;
} rng_stream_t;

TMR_HD rng_stream_t rng_stream(uint64_t seed, uint32_t purpose, uint32_t epoch, uint64_t index,
                               uint32_t first_draw) {
    rng_stream_t s;
    s.seed = seed;
    s.index = index;
    s.purpose = purpose;
    s.epoch = epoch;
    s.draw = first_draw;
    s.block = 0xFFFFFFFFu;
    s.words.v[0] = s.words.v[1] = s.words.v[2] = s.words.v[3] = 0;
    return s;
}

TMR_HD uint32_t rng_stream_u32(rng_stream_t *s) {
    uint32_t block = s->draw >> 2;
    if (block != s->block) {
        s->words = rng_block(s->seed, s->purpose, s->epoch, s->index, block);
        s->block = block;
    }
    return s->words.v[s->draw++ & 3u];
}

/* An exactly uniform integer in [0, range), range >= 1: Lemire's multiply-shift with
 * rejection of the low product words below 2^32 mod range. A caller that rejects the value
 * (an item the user clicked) calls again and continues down the same stream. */
TMR_HD uint32_t rng_stream_below(rng_stream_t *s, uint32_t range) {
    uint32_t threshold = (uint32_t)(-range) % range; /* 2^32 mod range */
    for (;;) {
        uint64_t m = (uint64_t)rng_stream_u32(s) * range;
        if ((uint32_t)m >= threshold) return (uint32_t)(m >> 32);
    }
}

/* The same without keeping a stream: starts at word *draw and advances it past the words
 * used. */
TMR_HD uint32_t rng_below(uint64_t seed, uint32_t purpose, uint32_t epoch, uint64_t index,
                          uint32_t *draw, uint32_t range) {
    rng_stream_t s = rng_stream(seed, purpose, epoch, index, *draw);
    uint32_t v = rng_stream_below(&s, range);
    *draw = s.draw;
    return v;
}

#endif
