/* The CUDA backend's epoch over host-built batches (gpu_train_epoch_staged, gpu.h): the host
 * fills each batch (batch_fill) and its GRU packing into one of two pinned slots while the
 * device trains on the other; the copies run on their own stream, ordered by events (a slot is
 * refilled only once its copies are done, and copied over only once the step that read it is
 * done), so each batch's step offsets travel with the batch and no step uploads anything
 * (gpu_ops.h). The step itself: kernels/model.cu. */
#include "model_internal.cuh"

static void *pinned_alloc(size_t bytes) {
    void *p = NULL;
    CUDA_CHECK(cudaHostAlloc(&p, bytes ? bytes : 16, cudaHostAllocDefault));
    return p;
}

static void stage_alloc(gpu_model_t *g) {
    if (g->stage) return;
    g->stage = (struct stage_slot *)calloc(2, sizeof(struct stage_slot));
    if (!g->stage) tmr_fatal("gpu_train_epoch_staged: out of host memory");
    CUDA_CHECK(cudaStreamCreateWithFlags(&g->copy_stream, cudaStreamNonBlocking));
    const size_t B = (size_t)g->max_B, L = (size_t)g->max_L, C = (size_t)g->max_C;
    for (int k = 0; k < 2; k++) {
        struct stage_slot *S = &g->stage[k];
        batch_t *b = &S->hb;
        b->user = (int32_t *)pinned_alloc(B * sizeof(int32_t));
        b->length = (int32_t *)pinned_alloc(B * sizeof(int32_t));
        b->hist = (int32_t *)pinned_alloc(B * L * sizeof(int32_t));
        b->pos = (int32_t *)pinned_alloc(B * L * sizeof(int32_t));
        b->mask = (float *)pinned_alloc(B * L * sizeof(float));
        b->cand = (int32_t *)pinned_alloc(B * C * sizeof(int32_t));
        b->cap_B = g->max_B;
        b->cap_L = g->max_L;
        b->cap_C = g->max_C;
        S->h_ids = (int32_t *)pinned_alloc(B * L * sizeof(int32_t));
        S->h_fin = (int32_t *)pinned_alloc(B * sizeof(int32_t));
        S->h_off = (int64_t *)pinned_alloc((L + 1) * sizeof(int64_t));
        S->h_perm = (int32_t *)tmr_malloc(B * sizeof(int32_t));
        S->h_sizes = (int32_t *)tmr_malloc(L * sizeof(int32_t));
        S->d_hist = take_i(g, B * L);
        S->d_pos = take_i(g, B * L);
        S->d_cand = take_i(g, B * C);
        S->d_ids = take_i(g, B * L);
        S->d_fin = take_i(g, B);
        S->d_off = (int64_t *)take(g, (L + 1) * sizeof(int64_t));
        CUDA_CHECK(cudaEventCreateWithFlags(&S->copied, cudaEventDisableTiming));
        CUDA_CHECK(cudaEventCreateWithFlags(&S->used, cudaEventDisableTiming));
    }
}

extern "C" int gpu_train_epoch_staged(gpu_model_t *g, const corpus_t *c, int history_max,
                                      const int32_t *train_neg, int num_neg,
                                      const int64_t *order, adam_t *opt, gpu_epoch_t *e,
                                      char *err, size_t errlen) {
    const char *who = "gpu_train_epoch_staged";
    const int64_t n = c->phase[PHASE_TRAIN].n_inst;
    const int bs = e->batch_size;
    if (bs < 1 || bs > g->max_B)
        return tmr_error(err, errlen, "%s: batch size %d outside 1..%d", who, bs, g->max_B);
    if (c->n_items != g->lay.cfg.n_items)
        return tmr_error(err, errlen, "the corpus has %d items, the model %d", c->n_items,
                         g->lay.cfg.n_items);
    if (1 + num_neg > g->max_C)
        return tmr_error(err, errlen, "%d candidates, the workspace %d", 1 + num_neg, g->max_C);
    const int64_t n_batches = (n + bs - 1) / bs;
    e->n_batches = n_batches;
    e->next_batch = e->first_batch;
    e->bad_batch = -1;
    e->bad_loss = e->last_loss = 0;
    e->graph_replays = 0;
    if (e->first_batch < 0 || e->first_batch > n_batches)
        return tmr_error(err, errlen, "epoch %u: cannot start at batch %lld of %lld", e->epoch + 1,
                         (long long)e->first_batch, (long long)n_batches);
    if (e->first_batch == n_batches) return 0;
    const double t0 = tmr_now();
    stage_alloc(g);
    struct epoch_acc acc0 = {e->loss_sum, -1, 0.0f, 0.0f};
    gpu_to_device(g->acc, &acc0, sizeof acc0);
    int32_t *const hist0 = g->hist, *const pos0 = g->pos, *const cand0 = g->cand;
    int32_t *const ids0 = g->pk_ids;
    const int64_t step0 = e->step, adam0 = opt->step;
    if (g->lazy) /* every count this epoch's steps can reach */
        gpu_lazy_adam_reserve(g->lazy, opt, adam0 + (n_batches - e->first_batch));
    int64_t bi = e->first_batch;
    const double t1 = tmr_now();
    e->prepare_s = t1 - t0;
    for (; bi < n_batches; bi++) {
        struct stage_slot *S = &g->stage[bi & 1];
        const int64_t s = bi * bs;
        const int B = (int)(n - s < bs ? n - s : bs);
        /* the pinned slot is free once its last copies (batch bi - 2) are done */
        CUDA_CHECK(cudaEventSynchronize(S->copied));
        batch_fill(&S->hb, c, PHASE_TRAIN, order + s, B, history_max, train_neg, num_neg, 0);
        const int L = S->hb.L, C = S->hb.C;
        const model_batch_t mb = {B, L, C, S->hb.hist, S->hb.pos, S->hb.length, S->hb.cand, 0, 0};
        int64_t T = 0;
        int n_steps = 0;
        if (g->finetune)
            n_steps = gm_pack_compute(&mb, who, S->h_perm, S->h_sizes, S->h_off, S->h_ids, S->h_fin, &T);
        /* copies wait until the step that last read the device slot (batch bi - 2) is done */
        CUDA_CHECK(cudaStreamWaitEvent(g->copy_stream, S->used, 0));
        const size_t bl = (size_t)B * L * sizeof(int32_t);
        CUDA_CHECK(cudaMemcpyAsync(S->d_hist, S->hb.hist, bl, cudaMemcpyHostToDevice, g->copy_stream));
        if (g->add_pos)
            CUDA_CHECK(cudaMemcpyAsync(S->d_pos, S->hb.pos, bl, cudaMemcpyHostToDevice, g->copy_stream));
        CUDA_CHECK(cudaMemcpyAsync(S->d_cand, S->hb.cand, (size_t)B * C * sizeof(int32_t),
                                   cudaMemcpyHostToDevice, g->copy_stream));
        if (g->finetune) {
            CUDA_CHECK(cudaMemcpyAsync(S->d_ids, S->h_ids, (size_t)T * sizeof(int32_t),
                                       cudaMemcpyHostToDevice, g->copy_stream));
            CUDA_CHECK(cudaMemcpyAsync(S->d_fin, S->h_fin, (size_t)B * sizeof(int32_t),
                                       cudaMemcpyHostToDevice, g->copy_stream));
            CUDA_CHECK(cudaMemcpyAsync(S->d_off, S->h_off, (size_t)(n_steps + 1) * sizeof(int64_t),
                                       cudaMemcpyHostToDevice, g->copy_stream));
        }
        CUDA_CHECK(cudaEventRecord(S->copied, g->copy_stream));
        CUDA_CHECK(cudaStreamWaitEvent(gpu_launch_stream, S->copied, 0));
        g->hist = S->d_hist;
        g->pos = S->d_pos;
        g->cand = S->d_cand;
        g->B = B;
        g->L = L;
        g->C = C;
        if (g->finetune) {
            g->pk_ids = S->d_ids;
            g->cur_final = S->d_fin;
            g->pack = (gpu_gru_pack_t){n_steps, n_steps > 0 ? S->h_sizes[0] : 0, T, S->d_off};
        }
        gpu_nosync_begin("a training step (gpu_train_epoch_staged)");
        const dropout_key_t key = {e->seed, (uint32_t)(step0 + (bi - e->first_batch))};
        gm_step_update(g, opt, key, bi);
        CUDA_CHECK(cudaEventRecord(S->used, gpu_launch_stream));
        gpu_nosync_end();
        if (e->after_batch && e->after_batch(e->ctx, bi, n_batches) && bi + 1 < n_batches) {
            bi++;
            break;
        }
    }
    e->queue_s = tmr_now() - t1;
    struct epoch_acc acc;
    gpu_to_host(&acc, g->acc, sizeof acc);
    g->hist = hist0;
    g->pos = pos0;
    g->cand = cand0;
    g->pk_ids = ids0;
    gm_epoch_finish(e, opt, &acc, bi, step0, adam0);
    return 0;
}
