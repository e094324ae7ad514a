/* The emulated launch's state and the fiber scheduler behind __syncthreads and the warp
 * primitives (what is emulated: emu/emulate.h).
 *
 * A block starts in straight-through mode: the launcher (emu_launch_grid) calls the kernel once
 * per thread on the caller's stack. The first barrier or warp primitive turns the rest of the
 * block into fibers: threads that already returned are done, the calling thread stays on the
 * caller's stack ("host" context), every later thread gets a worker fiber (an mmap'd stack
 * with a guard page, kept for the process and reused by later blocks: a worker loops
 * "run the kernel for the thread it is given, then switch away"). Switching is cooperative and
 * happens only inside emu_barrier / emu_warp_op / the end of a thread.
 *
 * Context switch: on x86-64 a few lines of assembly (callee-saved registers, MXCSR and the x87
 * control word, stack pointer); elsewhere, or with -DTMR_EMU_UCONTEXT, makecontext/swapcontext,
 * which makes a sigprocmask system call at every switch and which ASan only half supports (it
 * prints a warning). Measured here (1000 blocks of 256, g++ -O3): a thread that never
 * synchronises ~11 ns; ~66 ns per thread per __syncthreads and ~145 ns per lane per shuffle
 * with the assembly switch, ~360 and ~340-500 ns with swapcontext. Under ASan
 * every switch is announced with __sanitizer_start_switch_fiber /
 * __sanitizer_finish_switch_fiber (compiler-rt's common_interface_defs.h), so ASan knows which
 * stack is live and keeps fake stacks per fiber. */
#include "emulate.h"

#include <stdarg.h>
#include <sys/mman.h>
#include <unistd.h>

#if !defined(__x86_64__) || defined(TMR_EMU_UCONTEXT)
#define EMU_UCONTEXT 1
#include <ucontext.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifdef EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

emu_state_t emu_state;

namespace {

/* Each worker fiber's stack: the kernels' locals, the scheduler's frames, and under ASan the
 * redzones around every local. Overflow hits the guard page (SIGSEGV), never other memory. */
const size_t kStackBytes = 256 * 1024;

struct Context {
#ifdef EMU_UCONTEXT
    ucontext_t uc;
#else
    void *sp;           /* saved stack pointer (emu_raw_switch's frame on top) */
#endif
    char *stack;        /* lowest usable byte; NULL for the caller's stack */
    size_t stack_bytes;
#ifdef EMU_ASAN
    const void *asan_bottom;  /* the caller's stack as ASan reported it on the first switch */
    size_t asan_size;
#endif
};

enum State { READY, AT_BARRIER, AT_WARP, DONE };

struct Thread {
    Context *ctx;
    State state;
    unsigned tid;   /* linear index in the block */
    unsigned pos;   /* position in this launch's order */
    /* The warp primitive this thread waits at (state AT_WARP, or arrived and not yet served). */
    int op;
    unsigned mask;
    uint64_t bits;
    int arg, width;
    uint64_t result;
    const char *file;
    int line;
};

struct Block {
    dim3 idx;
    unsigned n;                       /* threads */
    std::vector<Thread> threads;      /* by tid */
    Thread *cur;                      /* running thread (fiber mode) */
    unsigned done;
    unsigned at_barrier;
    const char *bar_file;
    int bar_line;
    unsigned bar_count, bar_result;
    std::vector<uint32_t> arrived;    /* per warp: lanes that deposited for a pending rendezvous */
    std::vector<uint32_t> exited;     /* per warp: lanes whose thread has returned */
};

struct Launch {
    void (*call)(void *);
    void *arg;
    const char *what;
    size_t shared_bytes;
    size_t shared_cap;
};

Block blk;
Launch launch;
Context host;                       /* the caller's stack, saved while fibers run */
/* Fiber contexts, created on demand and kept for the process (a plain array: LeakSanitizer's
 * check runs after static destructors, which would free a vector's buffer). */
Context *workers[1024];
size_t n_workers;
Context *switching_from;            /* set just before every switch (ASan bookkeeping) */

[[noreturn]] void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "emulated %s, block (%u,%u,%u): ", launch.what ? launch.what : "kernel",
            blk.idx.x, blk.idx.y, blk.idx.z);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    abort();
}

/* "thread (x,y,z)" for messages. */
const char *thread_name(unsigned tid, char *buf, size_t len) {
    const unsigned x = tid % blockDim.x, y = (tid / blockDim.x) % blockDim.y,
                   z = tid / (blockDim.x * blockDim.y);
    snprintf(buf, len, "thread (%u,%u,%u) [linear %u, warp %u lane %u]", x, y, z, tid, tid / 32,
             tid % 32);
    return buf;
}

const char *op_name(int op) {
    switch (op) {
    case EMU_WARP_SYNC: return "__syncwarp";
    case EMU_WARP_SHFL: return "__shfl_sync";
    case EMU_WARP_SHFL_UP: return "__shfl_up_sync";
    case EMU_WARP_SHFL_DOWN: return "__shfl_down_sync";
    case EMU_WARP_SHFL_XOR: return "__shfl_xor_sync";
    case EMU_WARP_BALLOT: return "__ballot_sync";
    case EMU_WARP_ANY: return "__any_sync";
    case EMU_WARP_ALL: return "__all_sync";
    }
    return "?";
}

unsigned tid_at(unsigned pos) { return emu_state.reverse ? blk.n - 1 - pos : pos; }

/* ---- context switching ---- */
void worker_main();

#ifdef EMU_UCONTEXT
void worker_entry() { worker_main(); }
void raw_switch(Context *from, Context *to) {
    if (swapcontext(&from->uc, &to->uc) != 0) fatal("swapcontext failed");
}
void init_context(Context *c) {
    if (getcontext(&c->uc) != 0) fatal("getcontext failed");
    c->uc.uc_stack.ss_sp = c->stack;
    c->uc.uc_stack.ss_size = c->stack_bytes;
    c->uc.uc_link = nullptr;
    makecontext(&c->uc, worker_entry, 0);
}
#else
extern "C" void emu_raw_switch(void **save_sp, void *new_sp);
/* Pushes the callee-saved registers, MXCSR and the x87 control word on the current stack,
 * saves the stack pointer in *save_sp, loads new_sp and pops the same from there. */
asm(R"(
    .pushsection .text
    .globl emu_raw_switch
    .hidden emu_raw_switch
    .type emu_raw_switch, @function
emu_raw_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_raw_switch, .-emu_raw_switch
    .popsection
)");

[[noreturn]] void worker_entry() {
    worker_main();
    abort();
}
void raw_switch(Context *from, Context *to) { emu_raw_switch(&from->sp, to->sp); }
/* A fresh stack laid out as emu_raw_switch leaves one, returning into worker_entry with the
 * stack aligned as at a function's entry (rsp + 8 a multiple of 16). */
void init_context(Context *c) {
    uintptr_t top = ((uintptr_t)c->stack + c->stack_bytes) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = nullptr;                   /* worker_entry's return address: it never returns */
    *--sp = (void *)&worker_entry;     /* where emu_raw_switch's ret goes */
    for (int r = 0; r < 6; r++) *--sp = nullptr;  /* rbp (ends frame-pointer walks), rbx, r12-r15 */
    uint32_t mxcsr;
    uint16_t fpucw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpucw));
    *--sp = nullptr;
    memcpy((char *)sp, &mxcsr, 4);
    memcpy((char *)sp + 4, &fpucw, 2);
    c->sp = sp;
}
#endif

/* After arriving on a stack: tell ASan the switch is over; learn the caller's stack bounds the
 * first time we leave it. */
void after_switch(void *fake_stack) {
#ifdef EMU_ASAN
    const void *bottom;
    size_t size;
    __sanitizer_finish_switch_fiber(fake_stack, &bottom, &size);
    if (switching_from == &host) {
        host.asan_bottom = bottom;
        host.asan_size = size;
    }
#else
    (void)fake_stack;
#endif
}

void switch_context(Context *from, Context *to) {
    switching_from = from;
#ifdef EMU_ASAN
    void *fake_stack = nullptr;
    if (to == &host)
        __sanitizer_start_switch_fiber(&fake_stack, host.asan_bottom, host.asan_size);
    else
        __sanitizer_start_switch_fiber(&fake_stack, to->stack, to->stack_bytes);
    raw_switch(from, to);
    after_switch(fake_stack);
#else
    raw_switch(from, to);
#endif
}

void set_current(Thread *t) {
    blk.cur = t;
    emu_set_thread(t->tid);
}

void switch_to(Thread *next) {
    Thread *prev = blk.cur;
    set_current(next);
    if (prev->ctx != next->ctx) switch_context(prev->ctx, next->ctx);
}

Context *worker(size_t i) {
    while (n_workers <= i) {
        const size_t page = (size_t)sysconf(_SC_PAGESIZE);
        char *m = (char *)mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) fatal("cannot map a %zu-byte fiber stack", kStackBytes);
        if (mprotect(m, page, PROT_NONE) != 0) fatal("cannot protect a fiber stack's guard page");
        Context *c = new Context();
        c->stack = m + page;
        c->stack_bytes = kStackBytes;
        init_context(c);
        workers[n_workers++] = c;
    }
    return workers[i];
}

/* ---- scheduling ---- */

/* Every thread that is not done, with what it waits for; then abort. */
[[noreturn]] void deadlock(const char *why) {
    char name[96];
    fprintf(stderr, "emulated %s, block (%u,%u,%u): %s; threads not finished:\n", launch.what,
            blk.idx.x, blk.idx.y, blk.idx.z, why);
    int shown = 0;
    for (Thread &t : blk.threads) {
        if (t.state == DONE || t.state == READY) continue;
        if (shown++ == 16) {
            fprintf(stderr, "  ...\n");
            break;
        }
        if (t.state == AT_BARRIER)
            fprintf(stderr, "  %s waits at __syncthreads (%s:%d)\n",
                    thread_name(t.tid, name, sizeof name), blk.bar_file, blk.bar_line);
        else
            fprintf(stderr, "  %s waits at %s (%s:%d), mask 0x%08x\n",
                    thread_name(t.tid, name, sizeof name), op_name(t.op), t.file, t.line, t.mask);
    }
    fatal("deadlock (on the GPU this kernel would hang or be undefined)");
}

/* The next thread able to run after the current one, in launch order; NULL if none. */
Thread *next_ready() {
    const unsigned start = blk.cur->pos;
    for (unsigned k = 1; k <= blk.n; k++) {
        Thread *t = &blk.threads[tid_at((start + k) % blk.n)];
        if (t->state == READY) return t;
    }
    return nullptr;
}

/* The current thread cannot go on: run another. Returns when the current thread is resumed. */
void wait_for_others(const char *why) {
    Thread *next = next_ready();
    if (!next) deadlock(why);
    switch_to(next);
}

/* First synchronising call of a block: the rest of it becomes fibers. */
void begin_fibers() {
    const unsigned p = emu_state.fast_pos;
    for (unsigned pos = 0; pos < blk.n; pos++) {
        Thread &t = blk.threads[tid_at(pos)];
        t.tid = tid_at(pos);
        t.pos = pos;
        t.state = pos < p ? DONE : READY;
        if (pos < p) blk.exited[t.tid / 32] |= 1u << (t.tid % 32);
        t.ctx = pos == p ? &host : pos > p ? worker(pos - p - 1) : nullptr;
    }
    blk.done = p;
    blk.cur = &blk.threads[tid_at(p)];
    emu_state.coop = 1;
}

/* The current thread returned from the kernel. */
void thread_exit() {
    Thread *t = blk.cur;
    char a[96], b[96];
    if (blk.at_barrier > 0) {
        for (Thread &o : blk.threads)
            if (o.state == AT_BARRIER)
                fatal("%s returned while %s (and %u others) wait at __syncthreads (%s:%d): every "
                      "thread of the block must reach every barrier",
                      thread_name(t->tid, a, sizeof a), thread_name(o.tid, b, sizeof b),
                      blk.at_barrier - 1, blk.bar_file, blk.bar_line);
    }
    const unsigned warp = t->tid / 32, lane = t->tid % 32;
    for (uint32_t w = blk.arrived[warp]; w; w &= w - 1) {
        const Thread &o = blk.threads[warp * 32 + (unsigned)__builtin_ctz(w)];
        if (o.mask >> lane & 1)
            fatal("%s returned while %s waits for it at %s (%s:%d), mask 0x%08x",
                  thread_name(t->tid, a, sizeof a), thread_name(o.tid, b, sizeof b), op_name(o.op),
                  o.file, o.line, o.mask);
    }
    t->state = DONE;
    blk.exited[warp] |= 1u << lane;
    if (++blk.done == blk.n) {
        /* The block is finished: back to the launcher on the caller's stack. */
        emu_state.coop = 0;
        if (t->ctx != &host) switch_context(t->ctx, &host);
        return;
    }
    wait_for_others("a thread returned");
}

void worker_main() {
    after_switch(nullptr);
    for (;;) {
        launch.call(launch.arg);  /* the kernel, for blk.cur */
        thread_exit();            /* returns when this worker is given another thread */
    }
}

/* A shuffle's source lane within the warp (CUDA's rules for width and out-of-range lanes). */
unsigned shuffle_source(int op, unsigned lane, int arg, int width) {
    const unsigned w = (unsigned)width, segment = lane & ~(w - 1), within = lane & (w - 1);
    switch (op) {
    case EMU_WARP_SHFL: return segment + ((unsigned)arg & (w - 1));
    case EMU_WARP_SHFL_UP: return within >= (unsigned)arg ? lane - (unsigned)arg : lane;
    case EMU_WARP_SHFL_DOWN: return within + (unsigned)arg < w ? lane + (unsigned)arg : lane;
    case EMU_WARP_SHFL_XOR: {
        const unsigned src = lane ^ (unsigned)arg;
        return src < segment + w ? src : lane;  /* a later segment: the lane's own value */
    }
    }
    return lane;
}

/* All lanes of `mask` in warp `warp` have deposited: every one gets its result. */
void serve_rendezvous(unsigned warp, unsigned mask) {
    Thread *lanes = &blk.threads[warp * 32];
    uint64_t ballot = 0;
    for (unsigned j = 0; j < 32; j++)
        if ((mask >> j & 1) && lanes[j].bits) ballot |= 1ull << j;
    for (unsigned j = 0; j < 32; j++) {
        if (!(mask >> j & 1)) continue;
        Thread &t = lanes[j];
        switch (t.op) {
        case EMU_WARP_SYNC: t.result = 0; break;
        case EMU_WARP_BALLOT: t.result = ballot; break;
        case EMU_WARP_ANY: t.result = ballot != 0; break;
        case EMU_WARP_ALL: t.result = ballot == mask; break;
        default: {
            const unsigned src = shuffle_source(t.op, j, t.arg, t.width);
            /* Reading a lane outside the mask is undefined on the GPU: all-ones bits here. */
            t.result = (mask >> src & 1) ? lanes[src].bits : ~0ull;
        }
        }
        if (t.state == AT_WARP) t.state = READY;
    }
    blk.arrived[warp] &= ~mask;
}

}  // namespace

void emu_grid_begin(dim3 grid, dim3 block, size_t shared_bytes, void (*call)(void *), void *arg,
                    const char *what) {
    launch.what = what;
    const uint64_t threads = (uint64_t)block.x * block.y * block.z;
    if (block.x == 0 || block.y == 0 || block.z == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0)
        fatal("empty launch: grid (%u,%u,%u), block (%u,%u,%u)", grid.x, grid.y, grid.z, block.x,
              block.y, block.z);
    if (threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64)
        fatal("block (%u,%u,%u) exceeds the device's limits (1024 threads, z <= 64)", block.x,
              block.y, block.z);
    if (grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535)
        fatal("grid (%u,%u,%u) exceeds the device's limits", grid.x, grid.y, grid.z);
    if (shared_bytes > 227 * 1024)
        fatal("%zu bytes of dynamic shared memory exceed the device's 227 KiB", shared_bytes);
    const char *r = getenv("TMR_EMU_REVERSE");
    emu_state.reverse = r && r[0] == '1';
    emu_state.coop = 0;
    emu_state.block_threads = (unsigned)threads;
    blockDim = block;
    gridDim = grid;
    launch.call = call;
    launch.arg = arg;
    launch.shared_bytes = shared_bytes;
    if (shared_bytes > 0 && shared_bytes > launch.shared_cap) {
        free(emu_state.dynamic_shared);
        emu_state.dynamic_shared = nullptr;
    }
    /* Exactly the size asked for, so that ASan catches a read past it; 16-byte aligned. */
    if (!emu_state.dynamic_shared || launch.shared_cap != shared_bytes) {
        free(emu_state.dynamic_shared);
        emu_state.dynamic_shared = shared_bytes ? malloc(shared_bytes) : nullptr;
        launch.shared_cap = shared_bytes;
        if (shared_bytes && !emu_state.dynamic_shared) fatal("out of memory for shared memory");
    }
    blk.n = (unsigned)threads;
    blk.threads.resize(threads);
    blk.arrived.assign((threads + 31) / 32, 0);
    blk.exited.assign((threads + 31) / 32, 0);
}

void emu_grid_end(void) { launch.what = nullptr; }

void emu_block_begin(uint64_t linear) {
    blockIdx.x = (unsigned)(linear % gridDim.x);
    blockIdx.y = (unsigned)(linear / gridDim.x % gridDim.y);
    blockIdx.z = (unsigned)(linear / ((uint64_t)gridDim.x * gridDim.y));
    blk.idx = blockIdx;
    blk.at_barrier = 0;
    blk.done = 0;
    std::fill(blk.arrived.begin(), blk.arrived.end(), 0u);
    std::fill(blk.exited.begin(), blk.exited.end(), 0u);
    if (launch.shared_bytes) memset(emu_state.dynamic_shared, 0xff, launch.shared_bytes);
}

void emu_coop_host_exit(void) { thread_exit(); }

int emu_barrier(int kind, int predicate, const char *file, int line) {
    if (!emu_state.coop) begin_fibers();
    Thread *t = blk.cur;
    char a[96], b[96];
    if (blk.done > 0)
        for (Thread &o : blk.threads)
            if (o.state == DONE)
                fatal("%s reached __syncthreads (%s:%d), but %s has already returned: every "
                      "thread of the block must reach every barrier",
                      thread_name(t->tid, a, sizeof a), file, line,
                      thread_name(o.tid, b, sizeof b));
    if (blk.at_barrier == 0) {
        blk.bar_file = file;
        blk.bar_line = line;
        blk.bar_count = 0;
    } else if (line != blk.bar_line || strcmp(file, blk.bar_file) != 0) {
        for (Thread &o : blk.threads)
            if (o.state == AT_BARRIER)
                fatal("%s reached __syncthreads at %s:%d while %s waits at the one at %s:%d: "
                      "divergent barriers", thread_name(t->tid, a, sizeof a), file, line,
                      thread_name(o.tid, b, sizeof b), blk.bar_file, blk.bar_line);
    }
    blk.bar_count += predicate != 0;
    t->state = AT_BARRIER;
    if (++blk.at_barrier == blk.n) {
        /* Everyone is here: release the block; the next phase starts with the first thread. */
        blk.bar_result = blk.bar_count;
        blk.at_barrier = 0;
        for (Thread &o : blk.threads) o.state = READY;
        Thread *first = &blk.threads[tid_at(0)];
        if (first != t) switch_to(first);
    } else {
        wait_for_others("threads wait at __syncthreads that others cannot reach");
    }
    switch (kind) {
    case EMU_BAR_COUNT: return (int)blk.bar_result;
    case EMU_BAR_AND: return blk.bar_result == blk.n;
    case EMU_BAR_OR: return blk.bar_result > 0;
    }
    return 0;
}

uint64_t emu_warp_op(int op, unsigned mask, uint64_t bits, int arg, int width, const char *file,
                     int line) {
    if (!emu_state.coop) begin_fibers();
    Thread *t = blk.cur;
    const unsigned warp = t->tid / 32, lane = t->tid % 32, base = warp * 32;
    char a[96], b[96];
    if (!(mask >> lane & 1))
        fatal("%s calls %s (%s:%d) with mask 0x%08x, which leaves it out",
              thread_name(t->tid, a, sizeof a), op_name(op), file, line, mask);
    if (width < 1 || width > 32 || (width & (width - 1)) != 0)
        fatal("%s: %s (%s:%d) with width %d (a power of 2 up to 32)",
              thread_name(t->tid, a, sizeof a), op_name(op), file, line, width);
    /* The checks below keep an invariant: lanes waiting at a rendezvous agree on its mask and
     * primitive, and no lane waits for one that names a lane outside it. So one waiting lane
     * of this mask stands for all of them, and each arrival costs O(lanes that differ), not
     * O(32) (the per-arrival 32-lane scan was half of the emulated suite's time). */
    const uint32_t waiting = blk.arrived[warp];
    if (const uint32_t in = waiting & mask) {
        const Thread &o = blk.threads[base + (unsigned)__builtin_ctz(in)];
        if (o.mask != mask || o.op != op)
            fatal("%s calls %s (%s:%d) with mask 0x%08x while %s waits at %s (%s:%d) with mask "
                  "0x%08x: lanes of one rendezvous must make the same call with the same mask",
                  thread_name(t->tid, a, sizeof a), op_name(op), file, line, mask,
                  thread_name(o.tid, b, sizeof b), op_name(o.op), o.file, o.line, o.mask);
    }
    for (uint32_t out = waiting & ~mask; out; out &= out - 1) {
        const Thread &o = blk.threads[base + (unsigned)__builtin_ctz(out)];
        if (o.mask >> lane & 1)
            fatal("%s calls %s (%s:%d) with mask 0x%08x while %s waits for it at %s (%s:%d) "
                  "with mask 0x%08x: lanes of one rendezvous must make the same call with "
                  "the same mask", thread_name(t->tid, a, sizeof a), op_name(op), file, line,
                  mask, thread_name(o.tid, b, sizeof b), op_name(o.op), o.file, o.line,
                  o.mask);
    }
    if (blk.n - base < 32 && (mask >> (blk.n - base)) != 0)
        fatal("%s: %s (%s:%d) with mask 0x%08x names lane %u, which does not exist (block of "
              "%u threads)", thread_name(t->tid, a, sizeof a), op_name(op), file, line, mask,
              blk.n - base + (unsigned)__builtin_ctz(mask >> (blk.n - base)), blk.n);
    if (const uint32_t gone = mask & blk.exited[warp]) {
        const Thread &o = blk.threads[base + (unsigned)__builtin_ctz(gone)];
        fatal("%s: %s (%s:%d) with mask 0x%08x waits for %s, which has already returned",
              thread_name(t->tid, a, sizeof a), op_name(op), file, line, mask,
              thread_name(o.tid, b, sizeof b));
    }
    t->op = op;
    t->mask = mask;
    t->bits = bits;
    t->arg = arg;
    t->width = width;
    t->file = file;
    t->line = line;
    blk.arrived[warp] |= 1u << lane;
    if ((blk.arrived[warp] & mask) == mask) {
        serve_rendezvous(warp, mask);
    } else {
        t->state = AT_WARP;
        wait_for_others("lanes wait at a warp primitive that others cannot reach");
    }
    return t->result;
}

/* ---- the queue: work runs at once, or is recorded while its stream is captured ---- */

const char *emu_nosync_region = nullptr;
cudaError_t emu_last_error = cudaSuccess;

namespace {
struct Capture {
    cudaStream_t stream;  /* the stream being captured; NULL: no capture */
    emu_graph *graph;
    cudaError_t error;    /* the first failure: the capture is invalidated */
};
Capture capture;

void capture_fail(cudaError_t e) {
    if (capture.error == cudaSuccess) capture.error = e;
}

/* The kernels' dynamic shared memory opt-ins (cudaFuncSetAttribute). */
std::vector<std::pair<const void *, int>> shared_optin;
}  // namespace

cudaError_t emu_submit(cudaStream_t stream, const char *what, std::function<void()> work) {
    (void)what;
    if (capture.stream) {
        if (stream == capture.stream) {
            if (capture.error == cudaSuccess) capture.graph->nodes.push_back(std::move(work));
            return capture.error == cudaSuccess ? cudaSuccess : emu_fail(cudaErrorStreamCaptureInvalidated);
        }
        if (!stream) { /* the legacy stream would wait for the capturing one */
            capture_fail(cudaErrorStreamCaptureImplicit);
            return emu_fail(cudaErrorStreamCaptureImplicit);
        }
    }
    work();
    return cudaSuccess;
}

cudaError_t emu_sync_call(const char *what) {
    if (capture.stream) { /* refused (nothing waits): the capture fails */
        capture_fail(cudaErrorStreamCaptureUnsupported);
        return emu_fail(cudaErrorStreamCaptureUnsupported);
    }
    if (emu_nosync_region) {
        fprintf(stderr, "emulated %s inside %s: the host would wait for the device there "
                "(include/timirec/gpu_ops.h: no synchronous copy, allocation, free or "
                "synchronisation inside a training step)\n", what, emu_nosync_region);
        fflush(stderr);
        abort();
    }
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
    (void)mode;
    if (!s || capture.stream) return emu_fail(cudaErrorIllegalState);
    capture.stream = s;
    capture.graph = new emu_graph;
    capture.error = cudaSuccess;
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph) {
    *graph = nullptr;
    if (!capture.stream || s != capture.stream) return emu_fail(cudaErrorIllegalState);
    const cudaError_t e = capture.error;
    if (e == cudaSuccess) *graph = capture.graph;
    else delete capture.graph;
    capture = Capture{};
    return e == cudaSuccess ? cudaSuccess : emu_fail(cudaErrorStreamCaptureInvalidated);
}

void emu_set_shared_optin(const void *kernel, int bytes) {
    for (auto &k : shared_optin)
        if (k.first == kernel) {
            k.second = bytes;
            return;
        }
    shared_optin.emplace_back(kernel, bytes);
}

void emu_check_shared_optin(const void *kernel, size_t bytes, const char *what) {
    if (bytes <= 48 * 1024) return;
    int optin = 0;
    for (const auto &k : shared_optin)
        if (k.first == kernel) optin = k.second;
    if (bytes > (size_t)optin) {
        fprintf(stderr, "emulated launch of %s: %zu bytes of dynamic shared memory, but the "
                "kernel's opt-in (cudaFuncSetAttribute MaxDynamicSharedMemorySize) is %d: the "
                "GPU refuses this launch\n", what, bytes, optin);
        fflush(stderr);
        abort();
    }
}

/* kernels/device.cu's queries for a binary over the emulation (the command line built as
 * build/emu/timirec: --gpu trains on the emulated device; tests/cli_emu_dist.sh). */
extern "C" int gpu_device_count(char *desc, size_t desclen);
extern "C" int tmr_cuda_built(void) { return 1; }
extern "C" int tmr_cuda_describe(char *out, size_t outlen) { return gpu_device_count(out, outlen); }
