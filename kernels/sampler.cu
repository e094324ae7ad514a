/* The device-resident corpus and the device sampler (include/timirec/gpu_data.h): the GPU twin
 * of src/sampler.c. Every random number comes from rng.h (host+device), so the draws are the
 * CPU's, bit for bit; the rejection test is the same binary search over the same sorted
 * clicked list. */
#ifndef TMR_EMULATE
#include <cub/device/device_radix_sort.cuh>
#endif

#include <stdlib.h>
#include <string.h>

#include "data.cuh"
#include "timirec/rng.h"

/* corpus_sorted_contains, on the device. */
__device__ __forceinline__ int sorted_contains(const int32_t *list, int64_t n, int32_t item) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (list[mid] < item) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && list[lo] == item;
}

/* neg[i] for i = instance * num_neg + j: uniform over 1..range, redrawn down the same stream
 * while in the user's train set (sampler_train_negatives). One thread per negative. */
__global__ void negatives_kernel(int64_t n, int num_neg, uint64_t seed, uint32_t epoch,
                                 uint32_t range, const int32_t *__restrict__ user,
                                 const int64_t *__restrict__ off,
                                 const int32_t *__restrict__ items, int32_t *__restrict__ neg) {
    THREAD_INDEX(i, n);
    const int32_t u = user[i / num_neg];
    const int32_t *clicked = items + off[u];
    const int64_t n_clicked = off[u + 1] - off[u];
    rng_stream_t s = rng_stream(seed, RNG_TRAIN_NEG, epoch, (uint64_t)i, 0);
    int32_t item;
    do {
        item = 1 + (int32_t)rng_stream_below(&s, range);
    } while (sorted_contains(clicked, n_clicked, item));
    neg[i] = item;
}

/* The shuffle's sort keys (sampler_shuffle): words 0 and 1 of instance i's Philox block. */
__global__ void shuffle_keys_kernel(int64_t n, uint64_t seed, uint32_t epoch,
                                    uint64_t *__restrict__ keys, int64_t *__restrict__ index) {
    THREAD_INDEX(i, n);
    const philox4x32_t r = rng_block(seed, RNG_SHUFFLE, epoch, (uint64_t)i, 0);
    keys[i] = (uint64_t)r.v[0] << 32 | r.v[1];
    index[i] = i;
}

/* Batch slot b's instance; the batch starts at `start`, or, when batch_ctr is given (a step
 * replayed from a CUDA graph, where arguments are frozen), at *batch_ctr * bs. */
__device__ __forceinline__ int64_t slot_instance(const int64_t *order, int64_t start,
                                                 const int64_t *batch_ctr, int bs, int64_t b) {
    const int64_t s = batch_ctr ? *batch_ctr * bs : start;
    return order ? order[s + b] : s + b;
}

/* Per slot: user and length. */
__global__ void batch_rows_kernel(int64_t n, const int64_t *__restrict__ order, int64_t start,
                                  const int64_t *__restrict__ batch_ctr, int bs,
                                  const int32_t *__restrict__ inst_user,
                                  const int32_t *__restrict__ inst_len, int32_t *__restrict__ user,
                                  int32_t *__restrict__ length) {
    THREAD_INDEX(b, n);
    const int64_t inst = slot_instance(order, start, batch_ctr, bs, b);
    if (user) user[b] = inst_user[inst];
    length[b] = inst_len[inst];
}

/* Per (slot, l): history item, position index (length - l, 0 for padding) and mask, as
 * batch_fill. */
__global__ void batch_hist_kernel(int64_t n, int L, const int64_t *__restrict__ order,
                                  int64_t start, const int64_t *__restrict__ batch_ctr, int bs,
                                  const int64_t *__restrict__ inst_start,
                                  const int32_t *__restrict__ inst_len,
                                  const int32_t *__restrict__ seq_item, int32_t *__restrict__ hist,
                                  int32_t *__restrict__ pos, float *__restrict__ mask) {
    THREAD_INDEX(i, n);
    const int64_t b = i / L;
    const int l = (int)(i % L);
    const int64_t inst = slot_instance(order, start, batch_ctr, bs, b);
    const int32_t len = inst_len[inst];
    const int real = l < len;
    hist[i] = real ? seq_item[inst_start[inst] + l] : 0;
    pos[i] = real ? len - l : 0;
    if (mask) mask[i] = real ? 1.0f : 0.0f;
}

/* Per (slot, c): the target, then the instance's negatives (C - 1 of them). */
__global__ void batch_cand_kernel(int64_t n, int C, const int64_t *__restrict__ order,
                                  int64_t start, const int64_t *__restrict__ batch_ctr, int bs,
                                  const int32_t *__restrict__ target,
                                  const int32_t *__restrict__ neg, int32_t *__restrict__ cand) {
    THREAD_INDEX(i, n);
    const int64_t b = i / C;
    const int c = (int)(i % C);
    const int64_t inst = slot_instance(order, start, batch_ctr, bs, b);
    cand[i] = c == 0 ? target[inst] : neg[inst * (C - 1) + (c - 1)];
}

/* ---- host side ---------------------------------------------------------------------------- */

template <class T> static T *up(const T *host, size_t count) {
    T *p = (T *)gpu_malloc(tmr_mul_size(count, sizeof(T)));
    gpu_to_device(p, host, count * sizeof(T));
    return p;
}

extern "C" gpu_data_t *gpu_data_create(const corpus_t *c, int history_max, int num_neg) {
    if (num_neg < 1) tmr_fatal("gpu_data_create: num_neg %d must be >= 1", num_neg);
    gpu_data_t *d = (gpu_data_t *)calloc(1, sizeof *d);
    if (!d) tmr_fatal("gpu_data_create: out of host memory");
    d->c = c;
    d->n_items = c->n_items;
    d->history_max = history_max;
    d->num_neg = num_neg;
    const int64_t n_seq = c->seq_off[c->n_users];
    d->seq_item = up(c->seq_item, (size_t)(n_seq > 0 ? n_seq : 1));
    d->train_off = up(c->train_off, (size_t)c->n_users + 1);
    const int64_t n_clicked = c->train_off[c->n_users];
    d->train_items = up(c->train_items, (size_t)(n_clicked > 0 ? n_clicked : 1));
    for (int p = 0; p < N_PHASES; p++) {
        const corpus_phase_t *ph = &c->phase[p];
        gpu_phase_t *g = &d->ph[p];
        const int64_t n = ph->n_inst;
        const size_t n1 = (size_t)(n > 0 ? n : 1);
        g->n_inst = n;
        g->n_neg = p == PHASE_TRAIN ? num_neg : ph->n_neg;
        int64_t *start = (int64_t *)tmr_malloc(n1 * sizeof(int64_t));
        int32_t *user = (int32_t *)tmr_malloc(n1 * sizeof(int32_t));
        int32_t *target = (int32_t *)tmr_malloc(n1 * sizeof(int32_t));
        g->h_len = (int32_t *)tmr_malloc(n1 * sizeof(int32_t));
        const size_t nn = tmr_mul_size(n1, (size_t)(g->n_neg > 0 ? g->n_neg : 1));
        int32_t *neg = p == PHASE_TRAIN ? NULL : (int32_t *)tmr_malloc(nn * sizeof(int32_t));
        g->max_len = 0;
        for (int64_t i = 0; i < n; i++) {
            const int64_t r = ph->inst_row[i];
            const int32_t *items;
            const int32_t len = corpus_history(c, ph->user[r], ph->position[r], history_max, &items);
            start[i] = items - c->seq_item;
            g->h_len[i] = len;
            if (len > g->max_len) g->max_len = len;
            user[i] = ph->user[r];
            target[i] = ph->item[r];
            if (neg)
                memcpy(neg + (size_t)i * ph->n_neg, ph->neg + (size_t)r * ph->n_neg,
                       (size_t)ph->n_neg * sizeof(int32_t));
        }
        g->start = up(start, n1);
        g->len = up(g->h_len, n1);
        g->user = up(user, n1);
        g->target = up(target, n1);
        g->neg = neg ? up(neg, nn) : (int32_t *)gpu_malloc(nn * sizeof(int32_t));
        free(start);
        free(user);
        free(target);
        free(neg);
    }
    const int64_t n = d->ph[PHASE_TRAIN].n_inst;
    const size_t n1 = (size_t)(n > 0 ? n : 1);
    if (n > 2147483647LL) tmr_fatal("gpu_data_create: %lld training instances (CUB sorts int counts)", (long long)n);
    d->keys = (uint64_t *)gpu_malloc(n1 * sizeof(uint64_t));
    d->keys_sorted = (uint64_t *)gpu_malloc(n1 * sizeof(uint64_t));
    d->index = (int64_t *)gpu_malloc(n1 * sizeof(int64_t));
    d->order = (int64_t *)gpu_malloc(n1 * sizeof(int64_t));
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(NULL, d->sort_temp_bytes, d->keys, d->keys_sorted,
                                               d->index, d->order, (int)n));
    d->sort_temp = gpu_malloc(d->sort_temp_bytes);
    gpu_sync();
    return d;
}

extern "C" void gpu_data_free(gpu_data_t *d) {
    if (!d) return;
    gpu_free(d->seq_item);
    gpu_free(d->train_off);
    gpu_free(d->train_items);
    for (int p = 0; p < N_PHASES; p++) {
        gpu_phase_t *g = &d->ph[p];
        gpu_free(g->start);
        gpu_free(g->len);
        gpu_free(g->user);
        gpu_free(g->target);
        gpu_free(g->neg);
        free(g->h_len);
    }
    gpu_free(d->keys);
    gpu_free(d->keys_sorted);
    gpu_free(d->index);
    gpu_free(d->order);
    gpu_free(d->sort_temp);
    free(d);
}

extern "C" int gpu_data_train_negatives(gpu_data_t *d, uint64_t seed, uint32_t epoch, char *err,
                                        size_t errlen) {
    if (sampler_check_negatives(d->c, d->num_neg, err, errlen)) return -1;
    const gpu_phase_t *g = &d->ph[PHASE_TRAIN];
    LAUNCH(negatives_kernel, g->n_inst * d->num_neg, d->num_neg, seed, epoch,
           (uint32_t)(d->n_items - 1), g->user, d->train_off, d->train_items, g->neg);
    return 0;
}

extern "C" void gpu_data_shuffle(gpu_data_t *d, uint64_t seed, uint32_t epoch) {
    const int64_t n = d->ph[PHASE_TRAIN].n_inst;
    if (n <= 0) return;
    LAUNCH(shuffle_keys_kernel, n, seed, epoch, d->keys, d->index);
    size_t bytes = d->sort_temp_bytes;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(d->sort_temp, bytes, d->keys, d->keys_sorted,
                                               d->index, d->order, (int)n));
}

extern "C" void gpu_data_read_negatives(gpu_data_t *d, int32_t *neg) {
    gpu_to_host(neg, d->ph[PHASE_TRAIN].neg,
                (size_t)d->ph[PHASE_TRAIN].n_inst * (size_t)d->num_neg * sizeof(int32_t));
}

extern "C" void gpu_data_read_order(gpu_data_t *d, int64_t *perm) {
    gpu_to_host(perm, d->order, (size_t)d->ph[PHASE_TRAIN].n_inst * sizeof(int64_t));
}

void gpu_data_assemble(gpu_data_t *d, int phase, const int64_t *order, int64_t start,
                       const int64_t *batch_ctr, int bs, int B, int L, int32_t *user,
                       int32_t *length, int32_t *hist, int32_t *pos, float *mask,
                       int32_t *cand) {
    const gpu_phase_t *g = &d->ph[phase];
    const int C = 1 + g->n_neg;
    if (B < 1 || L < 1 || start < 0 || start + B > g->n_inst)
        tmr_fatal("gpu_data_assemble: batch [%lld, %lld) x %d of %s (%lld instances)",
                  (long long)start, (long long)start + B, L, corpus_phase_names[phase],
                  (long long)g->n_inst);
    LAUNCH(batch_rows_kernel, (int64_t)B, order, start, batch_ctr, bs, g->user, g->len, user,
           length);
    LAUNCH(batch_hist_kernel, (int64_t)B * L, L, order, start, batch_ctr, bs, g->start, g->len,
           d->seq_item, hist, pos, mask);
    LAUNCH(batch_cand_kernel, (int64_t)B * C, C, order, start, batch_ctr, bs, g->target, g->neg,
           cand);
}

extern "C" void gpu_data_fill_batch(gpu_data_t *d, int phase, int64_t start, int B, batch_t *b) {
    const gpu_phase_t *g = &d->ph[phase];
    const int C = 1 + g->n_neg;
    const int64_t *order = phase == PHASE_TRAIN ? d->order : NULL;
    /* L: the longest history in the batch (the host knows every instance's length). */
    int64_t *inst = (int64_t *)tmr_malloc((size_t)B * sizeof(int64_t));
    if (order) gpu_to_host(inst, order + start, (size_t)B * sizeof(int64_t));
    else
        for (int i = 0; i < B; i++) inst[i] = start + i;
    int L = 0;
    for (int i = 0; i < B; i++)
        if (g->h_len[inst[i]] > L) L = g->h_len[inst[i]];
    free(inst);
    if (B > b->cap_B || L > b->cap_L || C > b->cap_C)
        tmr_fatal("gpu_data_fill_batch: batch of %d x %d x %d exceeds its allocation %d x %d x %d",
                  B, L, C, b->cap_B, b->cap_L, b->cap_C);
    const size_t bl = (size_t)B * (size_t)L, bc = (size_t)B * (size_t)C;
    int32_t *du = (int32_t *)gpu_malloc((size_t)B * sizeof(int32_t));
    int32_t *dl = (int32_t *)gpu_malloc((size_t)B * sizeof(int32_t));
    int32_t *dh = (int32_t *)gpu_malloc(bl * sizeof(int32_t));
    int32_t *dp = (int32_t *)gpu_malloc(bl * sizeof(int32_t));
    float *dm = (float *)gpu_malloc(bl * sizeof(float));
    int32_t *dc = (int32_t *)gpu_malloc(bc * sizeof(int32_t));
    gpu_data_assemble(d, phase, order, start, NULL, 0, B, L, du, dl, dh, dp, dm, dc);
    b->B = B;
    b->L = L;
    b->C = C;
    gpu_to_host(b->user, du, (size_t)B * sizeof(int32_t));
    gpu_to_host(b->length, dl, (size_t)B * sizeof(int32_t));
    gpu_to_host(b->hist, dh, bl * sizeof(int32_t));
    gpu_to_host(b->pos, dp, bl * sizeof(int32_t));
    gpu_to_host(b->mask, dm, bl * sizeof(float));
    gpu_to_host(b->cand, dc, bc * sizeof(int32_t));
    gpu_free(du);
    gpu_free(dl);
    gpu_free(dh);
    gpu_free(dp);
    gpu_free(dm);
    gpu_free(dc);
}
