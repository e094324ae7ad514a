/* acts: declarations for one precision (no include guard: cpu_ops.h includes this file once
 * per precision with REAL and R(name) defined).
 *
 * The CPU side of the activation table (model.h): a cache binds each table entry it owns to
 * one of its pointer fields (a slot), and act_carve allocates one block for a part of the
 * model and points every bound field at its place. */

/* Where an entry lives in a cache: the address of its pointer field, of the entry's type
 * (ACT_F32: f, ACT_I32: i, ACT_I64: l; the other two NULL). All NULL: not bound. */
typedef struct {
    REAL **f;
    int32_t **i;
    int64_t **l;
} R(act_slot_t);

/* One block (tmr_malloc; free() it) for the entries of `groups` (bit mask of 1 << enum
 * act_group) that the CPU has in t, laid out by model_acts_block with ACT_ALIGN; points each
 * entry's slot at its place. Fatal if such an entry has no slot of its type. *bytes (may be
 * NULL) gets the block's size. */
void *R(act_carve)(const act_table_t *t, unsigned groups, const R(act_slot_t) *slot,
                   size_t *bytes);
