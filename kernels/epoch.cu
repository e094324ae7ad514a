/* The CUDA backend's epoch driver (include/timirec/gpu_data.h): gpu_train_epoch and
 * gpu_eval_phase run a whole epoch or evaluation phase on the resident corpus, assembling each
 * batch on the device and summing the losses on the device, so the host never waits for the
 * device between steps. The host plans the epoch's batch shapes and GRU packing at once from the
 * instances' lengths (it knows them without asking the device) and uploads the packing in one
 * copy, so no step uploads anything (gpu_ops.h). Pretrain steps replay as CUDA graphs (below).
 * The step itself: kernels/model.cu. */
#include "model_internal.cuh"

/* Grow a host / device array to at least n elements (contents lost). */
template <class T> static void grow_host(T **p, int64_t *cap, int64_t n) {
    if (n <= *cap) return;
    free(*p);
    *p = (T *)tmr_malloc(tmr_mul_size((size_t)n, sizeof(T)));
    *cap = n;
}

/* Plan batches [first, n_batches) of n instances taken in `order` (host; NULL: 0, 1, ...) in
 * batches of bs, lengths h_len (host, by instance): each batch's padded length L (the longest
 * history in it, as batch_fill) and, finetune, its GRU packing as pack_batch computes it
 * (slots sorted by length, longest first, ties in batch order; rows per step; each row's final
 * packed row). The packing goes to the device in one copy per array. */
static void plan_batches(gpu_model_t *g, const int32_t *h_len, const int64_t *order, int64_t n,
                         int bs, int64_t first) {
    const int64_t n_batches = (n + bs - 1) / bs;
    const int maxL = g->max_L;
    if (n > g->plan_cap_n || n_batches > g->plan_cap_batches) {
        plan_free(g);
        const size_t nb = (size_t)n_batches, n1 = (size_t)n;
        g->plan_L = (int32_t *)tmr_malloc(tmr_mul_size(nb, sizeof(int32_t)));
        g->plan_perm = (int32_t *)tmr_malloc(tmr_mul_size(n1, sizeof(int32_t)));
        g->plan_final = (int32_t *)tmr_malloc(tmr_mul_size(n1, sizeof(int32_t)));
        g->plan_batch_sizes = (int32_t *)tmr_malloc(tmr_mul_size(nb * (size_t)maxL, sizeof(int32_t)));
        g->plan_step_off = (int64_t *)tmr_malloc(tmr_mul_size(nb * (size_t)(maxL + 1), sizeof(int64_t)));
        g->plan_perm_d = (int32_t *)gpu_malloc(n1 * sizeof(int32_t));
        g->plan_final_d = (int32_t *)gpu_malloc(n1 * sizeof(int32_t));
        g->plan_step_off_d = (int64_t *)gpu_malloc(nb * (size_t)(maxL + 1) * sizeof(int64_t));
        g->plan_cap_n = n;
        g->plan_cap_batches = n_batches;
    }
    for (int64_t bi = first; bi < n_batches; bi++) {
        const int64_t s = bi * bs;
        const int B = (int)(n - s < bs ? n - s : bs);
        int L = 0;
        for (int i = 0; i < B; i++) {
            const int32_t len = h_len[order ? order[s + i] : s + i];
            if (len > L) L = len;
        }
        if (L < 1 || L > maxL)
            tmr_fatal("gpu_train_epoch: batch %lld's longest history %d outside 1..%d",
                      (long long)bi, L, maxL);
        g->plan_L[bi] = L;
        if (!g->finetune) continue;
        int32_t *perm = g->plan_perm + s, *fin = g->plan_final + s;
        int32_t *sizes = g->plan_batch_sizes + bi * maxL;
        int64_t *off = g->plan_step_off + bi * (maxL + 1);
        int slot = 0;
        for (int len = L; len >= 0; len--)
            for (int i = 0; i < B; i++)
                if (h_len[order ? order[s + i] : s + i] == len) perm[slot++] = i;
        for (int t = 0; t < L; t++) sizes[t] = 0;
        for (int i = 0; i < B; i++)
            for (int t = 0; t < h_len[order ? order[s + i] : s + i]; t++) sizes[t]++;
        off[0] = 0;
        for (int t = 0; t < L; t++) off[t + 1] = off[t] + sizes[t];
        for (int i = 0; i < B; i++) {
            const int bi_row = perm[i];
            const int32_t len = h_len[order ? order[s + bi_row] : s + bi_row];
            fin[bi_row] = len == 0 ? -1 : (int32_t)(off[len - 1] + i);
        }
    }
    if (!g->finetune || first >= n_batches) return;
    const int64_t s0 = first * bs;
    gpu_to_device(g->plan_perm_d + s0, g->plan_perm + s0, (size_t)(n - s0) * sizeof(int32_t));
    gpu_to_device(g->plan_final_d + s0, g->plan_final + s0, (size_t)(n - s0) * sizeof(int32_t));
    gpu_to_device(g->plan_step_off_d + first * (maxL + 1), g->plan_step_off + first * (maxL + 1),
                  (size_t)((n_batches - first) * (maxL + 1)) * sizeof(int64_t));
}

/* pk_ids[step_off[t] + i] = hist[perm[i], t] for t < the length of slot i's row: packed slot i
 * takes part in step t exactly when its row is longer than t (slots are sorted longest first),
 * as pack_batch's ids. One thread per (slot, t). */
__global__ void pack_ids_kernel(int64_t n, int L, const int32_t *__restrict__ perm,
                                const int64_t *__restrict__ step_off,
                                const int32_t *__restrict__ length,
                                const int32_t *__restrict__ hist, int32_t *__restrict__ ids) {
    THREAD_INDEX(e, n);
    const int64_t i = e / L;
    const int t = (int)(e % L);
    const int32_t row = perm[i];
    if (t < length[row]) ids[step_off[t] + i] = hist[(int64_t)row * L + t];
}

/* Batch bi of the plan into g's device buffers (assembled from the resident corpus), with its
 * packing (finetune). */
static void plan_use_batch(gpu_model_t *g, gpu_data_t *d, int phase, const int64_t *order_d,
                           int64_t n, int bs, int64_t bi) {
    const int64_t s = bi * bs;
    const int B = (int)(n - s < bs ? n - s : bs), L = g->plan_L[bi];
    const int C = 1 + d->ph[phase].n_neg;
    if (B > g->max_B || C > g->max_C)
        tmr_fatal("gpu_train_epoch: batch %d x %d x %d outside the workspace %d x %d x %d", B, L,
                  C, g->max_B, g->max_L, g->max_C);
    gpu_data_assemble(d, phase, order_d, s, NULL, 0, B, L, NULL, g->length, g->hist, g->pos,
                      NULL, g->cand);
    g->B = B;
    g->L = L;
    g->C = C;
    if (!g->finetune) return;
    const int maxL = g->max_L;
    g->cur_final = g->plan_final_d + s;
    g->pack = (gpu_gru_pack_t){L, g->plan_batch_sizes[bi * maxL], g->plan_step_off[bi * (maxL + 1) + L],
                               g->plan_step_off_d + bi * (maxL + 1)};
    LAUNCH(pack_ids_kernel, (int64_t)B * L, L, g->plan_perm_d + s,
           g->plan_step_off_d + bi * (maxL + 1), g->length, g->hist, g->pk_ids);
}

/* The model and the resident corpus fit each other (checked once per call). */
static int check_fit(gpu_model_t *g, gpu_data_t *d, int phase, char *err, size_t errlen) {
    const model_config_t *cfg = &g->lay.cfg;
    if (d->n_items != cfg->n_items)
        return tmr_error(err, errlen, "the corpus has %d items, the model %d", d->n_items,
                         cfg->n_items);
    if (d->ph[phase].max_len > g->max_L)
        return tmr_error(err, errlen, "%s histories up to %d items, the workspace %d",
                         corpus_phase_names[phase], d->ph[phase].max_len, g->max_L);
    if (g->add_pos && d->ph[phase].max_len > cfg->history_max)
        return tmr_error(err, errlen, "%s histories up to %d items, the position table %d",
                         corpus_phase_names[phase], d->ph[phase].max_len, cfg->history_max);
    if (1 + d->ph[phase].n_neg > g->max_C)
        return tmr_error(err, errlen, "%s has %d candidates, the workspace %d",
                         corpus_phase_names[phase], 1 + d->ph[phase].n_neg, g->max_C);
    return 0;
}

/* ---- CUDA graphs of the pretrain step ------------------------------------------------------
 * A pretrain step has no host-side inputs but its shape once its batch index and Adam's
 * scalars are read from device memory (batch_ctr, adam_by_batch): the step is captured once per
 * shape (B, L, C) and replayed; the finetune step is not (its GRU launches are sized from each
 * batch's packing on the host, and its dropout key is a launch argument). The first batch of a
 * shape runs directly (cuBLAS initialises then, outside any capture), the second is captured
 * and every later one replays. What a graph freezes: its launch shapes and pointers; every
 * per-step value (the batch index, Adam's scalars with lr and l2) is read from device memory
 * when it runs. A graph is stale once any device buffer was allocated or freed after its
 * capture (gpu_alloc_generation): it is then captured again. A capture that fails for any
 * reason (a CUDA, cuBLAS or CUB call refused while capturing, a buffer that would grow) is
 * abandoned, the batch runs directly, and graphs stay off for the rest of the run, with one
 * line on stderr saying why. Off with TIMIREC_GPU_GRAPHS=0 and under gpu_debug_sync(1). The
 * emulation (emu/emulate.h) records and replays graphs too. */

__global__ void advance_batch_kernel(int64_t n, int64_t *__restrict__ batch_ctr) {
    THREAD_INDEX(i, n);
    (void)i;
    *batch_ctr += 1;
}

static int graphs_wanted(gpu_model_t *g) {
    const char *env = getenv("TIMIREC_GPU_GRAPHS");
    if (env && env[0] == '0') return 0;
    return !g->finetune && !gpu_debug_sync_enabled();
}

/* Adam's scalars for batches [first, n_batches) of the epoch: the step each will be. */
static void adam_table_for_epoch(gpu_model_t *g, const adam_t *opt, int64_t first,
                                 int64_t n_batches) {
    if (n_batches > g->adam_cap) {
        free(g->h_adam_by_batch);
        gpu_free(g->adam_by_batch);
        g->h_adam_by_batch =
            (adam_scalars_t *)tmr_malloc(tmr_mul_size((size_t)n_batches, sizeof(adam_scalars_t)));
        g->adam_by_batch = (adam_scalars_t *)gpu_malloc((size_t)n_batches * sizeof(adam_scalars_t));
        g->adam_cap = n_batches;
    }
    for (int64_t b = first; b < n_batches; b++)
        g->h_adam_by_batch[b] = tmr_adam_scalars(opt->lr, opt->beta1, opt->beta2, opt->eps,
                                                 opt->l2, opt->step + (b - first) + 1);
    gpu_to_device(g->adam_by_batch + first, g->h_adam_by_batch + first,
                  (size_t)(n_batches - first) * sizeof(adam_scalars_t));
}

/* The step of batch *batch_ctr (shape B x L), then the counter moves on. */
static void pretrain_step_indexed(gpu_model_t *g, gpu_data_t *d, adam_t *opt, int bs, int B,
                                  int L) {
    gpu_data_assemble(d, PHASE_TRAIN, d->order, 0, g->batch_ctr, bs, B, L, NULL, g->length,
                      g->hist, g->pos, NULL, g->cand);
    g->B = B;
    g->L = L;
    g->C = 1 + d->ph[PHASE_TRAIN].n_neg;
    const dropout_key_t none = {0, 0}; /* pretrain has no dropout */
    gm_train_step_device(g, none, 0, 0, -1, g->batch_ctr);
    gpu_lazy_batch_t lb;
    gpu_adam_update_guarded(g->ctx, opt, &g->lay, g->params, g->grads, g->adam_m, g->adam_v,
                            &g->acc->bad, g->adam_by_batch, g->batch_ctr, gm_lazy_batch(g, &lb));
    LAUNCH(advance_batch_kernel, (int64_t)1, g->batch_ctr);
}

/* Capture batch bi's step into sg->exec. Returns 0, or -1 with graphs turned off for the run
 * (g->graphs_why says why; nothing of the failed capture ran). */
static int capture_step(gpu_model_t *g, gpu_data_t *d, adam_t *opt, int bs, int B, int L,
                        struct step_graph *sg) {
    gpu_ctx_t *ctx = g->ctx;
    cudaGraph_t graph = NULL;
    char why[512] = "";
    gpu_set_launch_stream(ctx, g->stream);
    /* after cublasSetStream, which resets it to the default pool */
    CUBLAS_CHECK(cublasSetWorkspace(ctx->blas, g->blas_ws, BLAS_WORKSPACE));
    cudaError_t e = cudaStreamBeginCapture(g->stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        snprintf(why, sizeof why, "cudaStreamBeginCapture: %s", cudaGetErrorString(e));
    } else {
        gpu_capture_begin();
        if (g->fail_next_capture == GPU_CAPTURE_FAIL_SYNC) /* a call a capture refuses */
            gpu_poison(g->kstar, sizeof(int32_t));
        else if (g->fail_next_capture == GPU_CAPTURE_FAIL_GROW) /* scratch that must grow */
            gpu_ctx_ones(ctx, ctx->ones_cap + 1);
        g->fail_next_capture = 0;
        pretrain_step_indexed(g, d, opt, bs, B, L);
        const char *failed = gpu_capture_end();
        e = cudaStreamEndCapture(g->stream, &graph);
        if (failed) snprintf(why, sizeof why, "%s", failed);
        else if (e != cudaSuccess)
            snprintf(why, sizeof why, "cudaStreamEndCapture: %s", cudaGetErrorString(e));
        else if ((e = cudaGraphInstantiate(&sg->exec, graph, 0)) != cudaSuccess)
            snprintf(why, sizeof why, "cudaGraphInstantiate: %s", cudaGetErrorString(e));
    }
    if (graph) cudaGraphDestroy(graph);
    gpu_set_launch_stream(ctx, 0);
    if (!why[0]) {
        sg->generation = gpu_alloc_generation();
        return 0;
    }
    cudaGetLastError(); /* the capture's errors are reported here, not by the next launch */
    sg->exec = NULL;
    g->graphs_failed = 1;
    snprintf(g->graphs_why, sizeof g->graphs_why, "capturing the %d x %d step: %s", B, L, why);
    fprintf(stderr, "timirec: warning: CUDA graphs off for this run, steps launched one by one "
            "(%s)\n", g->graphs_why);
    return -1;
}

/* Batch bi through its shape's graph (captured on the shape's second batch, recaptured when
 * stale); returns 1 when it replayed or captured-and-launched a graph, 0 when it ran directly.
 * opt->step advances by one in every case. */
static int graph_step(gpu_model_t *g, gpu_data_t *d, adam_t *opt, int bs, int64_t n,
                      int64_t bi, gpu_epoch_t *e) {
    const int64_t s = bi * bs;
    const int B = (int)(n - s < bs ? n - s : bs), L = g->plan_L[bi];
    const int C = 1 + d->ph[PHASE_TRAIN].n_neg;
    if (B > g->max_B || L > g->max_L || C > g->max_C)
        tmr_fatal("gpu_train_epoch: batch %d x %d x %d outside the workspace %d x %d x %d", B, L,
                  C, g->max_B, g->max_L, g->max_C);
    g->B = B; /* the last batch's shape (gpu_model_read) */
    g->L = L;
    g->C = C;
    opt->step++; /* this batch's step (its scalars are adam_by_batch[bi]) */
    struct step_graph *sg = NULL;
    for (int i = 0; i < g->n_graphs; i++)
        if (g->graphs[i].B == B && g->graphs[i].L == L && g->graphs[i].C == C &&
            g->graphs[i].bs == bs)
            sg = &g->graphs[i];
    if (!sg && g->n_graphs < MAX_GRAPHS) {
        sg = &g->graphs[g->n_graphs++];
        memset(sg, 0, sizeof *sg);
        sg->B = B;
        sg->L = L;
        sg->C = C;
        sg->bs = bs;
    }
    if (sg && sg->exec && sg->generation != gpu_alloc_generation()) {
        /* stale: a buffer it points into may have moved; the scratch is already big enough
         * for this shape, so capture again now */
        CUDA_CHECK(cudaGraphExecDestroy(sg->exec));
        sg->exec = NULL;
        sg->seen = 1;
        e->graph_stale++;
    }
    if (!sg || g->graphs_failed || (!sg->exec && sg->seen == 0)) {
        if (sg) sg->seen++;
        pretrain_step_indexed(g, d, opt, bs, B, L);
        return 0;
    }
    if (!sg->exec) {
        if (capture_step(g, d, opt, bs, B, L, sg)) {
            pretrain_step_indexed(g, d, opt, bs, B, L);
            return 0;
        }
        e->graph_captures++;
    }
    CUDA_CHECK(cudaGraphLaunch(sg->exec, g->stream));
    return 1;
}

/* What an epoch driver reports once its queue is drained: the batches applied before the
 * first non-finite loss (all up to bi when none), the device's loss sums, and the step and
 * Adam counters advanced by the batches applied. */
void gm_epoch_finish(gpu_epoch_t *e, adam_t *opt, const struct epoch_acc *acc, int64_t bi,
                     int64_t step0, int64_t adam0) {
    const int64_t applied = (acc->bad >= 0 ? acc->bad : bi) - e->first_batch;
    e->next_batch = e->first_batch + applied;
    e->bad_batch = acc->bad;
    e->bad_loss = acc->bad_loss;
    e->last_loss = acc->last_loss;
    e->loss_sum = acc->loss_sum;
    e->step = step0 + applied;
    opt->step = adam0 + applied;
}

extern "C" const char *gpu_model_graphs_off_why(const gpu_model_t *g) {
    return g->graphs_failed ? g->graphs_why : NULL;
}

extern "C" void gpu_model_test_capture_failure(gpu_model_t *g, int how) { g->fail_next_capture = how; }

extern "C" int gpu_train_epoch(gpu_model_t *g, gpu_data_t *d, adam_t *opt, gpu_epoch_t *e,
                               char *err, size_t errlen) {
    const int64_t n = d->ph[PHASE_TRAIN].n_inst;
    const int bs = e->batch_size;
    if (bs < 1 || bs > g->max_B)
        return tmr_error(err, errlen, "gpu_train_epoch: batch size %d outside 1..%d", bs, g->max_B);
    if (check_fit(g, d, PHASE_TRAIN, err, errlen)) return -1;
    const int64_t n_batches = (n + bs - 1) / bs;
    e->n_batches = n_batches;
    e->next_batch = e->first_batch;
    e->bad_batch = -1;
    e->bad_loss = e->last_loss = 0;
    if (e->first_batch < 0 || e->first_batch > n_batches)
        return tmr_error(err, errlen, "epoch %u: cannot start at batch %lld of %lld", e->epoch + 1,
                         (long long)e->first_batch, (long long)n_batches);
    if (e->first_batch == n_batches) return 0;
    const double t0 = tmr_now();
    if (gpu_data_train_negatives(d, e->seed, e->epoch, err, errlen)) return -1;
    gpu_data_shuffle(d, e->seed, e->epoch);
    /* The order comes back once (the host plans every batch's shape and packing from it). */
    grow_host(&g->h_order, &g->h_order_cap, n);
    gpu_data_read_order(d, g->h_order);
    plan_batches(g, d->ph[PHASE_TRAIN].h_len, g->h_order, n, bs, e->first_batch);
    struct epoch_acc acc0 = {e->loss_sum, -1, 0.0f, 0.0f};
    gpu_to_device(g->acc, &acc0, sizeof acc0);
    const int64_t step0 = e->step, adam0 = opt->step;
    int64_t bi = e->first_batch;
    const double t1 = tmr_now();
    e->prepare_s = t1 - t0;
    const int graphs = graphs_wanted(g);
    if (graphs) { /* the replayed steps read their batch and Adam scalars from the device */
        adam_table_for_epoch(g, opt, e->first_batch, n_batches);
        gpu_to_device(g->batch_ctr, &e->first_batch, sizeof(int64_t));
    }
    if (g->lazy) /* every count this epoch's steps can reach */
        gpu_lazy_adam_reserve(g->lazy, opt, opt->step + (n_batches - e->first_batch));
    e->graph_replays = e->graph_captures = e->graph_stale = 0;
    for (; bi < n_batches; bi++) {
        if (graphs) {
            /* a capture is not a step: it may allocate nothing either, and its own failures
             * are reported by capture_step */
            gpu_nosync_begin("a training step (gpu_train_epoch, graphs)");
            e->graph_replays += graph_step(g, d, opt, bs, n, bi, e);
            gpu_nosync_end();
        } else {
            gpu_nosync_begin("a training step (gpu_train_epoch)");
            plan_use_batch(g, d, PHASE_TRAIN, d->order, n, bs, bi);
            const dropout_key_t key = {e->seed, (uint32_t)(step0 + (bi - e->first_batch))};
            gm_step_update(g, opt, key, bi);
            gpu_nosync_end();
        }
        if (e->after_batch && e->after_batch(e->ctx, bi, n_batches) && bi + 1 < n_batches) {
            bi++;
            break;
        }
    }
    e->queue_s = tmr_now() - t1;
    struct epoch_acc acc;
    gpu_to_host(&acc, g->acc, sizeof acc);
    gm_epoch_finish(e, opt, &acc, bi, step0, adam0);
    return 0;
}

/* rank[b] = metrics_rank(scores row b): 1 + the candidates scored at least as high as the
 * target (a NaN target: C; NaN candidates never count). */
__global__ void rank_kernel(int64_t n, int C, const float *__restrict__ scores,
                            int64_t *__restrict__ rank) {
    THREAD_INDEX(b, n);
    const float *s = scores + b * C;
    const float t = s[0];
    if (isnan(t)) {
        rank[b] = C;
        return;
    }
    int64_t beat = 0;
    for (int i = 1; i < C; i++) beat += s[i] >= t;
    rank[b] = 1 + beat;
}

#define PRM(id) (g->params + model_offset(&g->lay, (id)))
extern "C" void gpu_eval_phase(gpu_model_t *g, gpu_data_t *d, int phase, int eval_batch,
                               int64_t *ranks) {
    char err[256];
    if (phase != PHASE_DEV && phase != PHASE_TEST)
        tmr_fatal("gpu_eval_phase: phase %d is not dev or test", phase);
    if (eval_batch < 1 || eval_batch > g->max_B)
        tmr_fatal("gpu_eval_phase: batch size %d outside 1..%d", eval_batch, g->max_B);
    if (check_fit(g, d, phase, err, sizeof err)) tmr_fatal("gpu_eval_phase: %s", err);
    const int64_t n = d->ph[phase].n_inst;
    if (n <= 0) return;
    if (n > g->ranks_cap) {
        gpu_free(g->ranks_d);
        g->ranks_d = (int64_t *)gpu_malloc((size_t)n * sizeof(int64_t));
        g->ranks_cap = n;
    }
    gpu_ctx_t *ctx = g->ctx;
    const int K = g->K, dim = g->d;
    const float *E = PRM(P_EXT_ITEM_EMB);
    plan_batches(g, d->ph[phase].h_len, NULL, n, eval_batch, 0);
    const int64_t n_batches = (n + eval_batch - 1) / eval_batch;
    gpu_nosync_begin("an evaluation phase (gpu_eval_phase)");
    for (int64_t bi = 0; bi < n_batches; bi++) {
        plan_use_batch(g, d, phase, NULL, n, eval_batch, bi);
        const int B = g->B, C = g->C;
        gm_extractor_forward(g);
        if (g->lay.cfg.stage == STAGE_PRETRAIN) {
            gpu_pretrain_scores(ctx, E, g->V, g->cand, B, C, K, dim, 0, NULL, g->scores);
        } else {
            dropout_key_t none = {0, 0};
            gm_predictor_forward(g, 0, none, 0, 0);
            gpu_user_vector(ctx, g->V, g->pred_intent, B, K, dim, g->w, g->u);
            gpu_candidate_scores(ctx, E, g->u, g->cand, B, C, dim, g->scores);
        }
        LAUNCH(rank_kernel, (int64_t)B, C, g->scores, g->ranks_d + bi * eval_batch);
    }
    gpu_nosync_end();
    gpu_to_host(ranks, g->ranks_d, (size_t)n * sizeof(int64_t));
}
#undef PRM
