/* edgeq kernels: ADD (eq_add).
 *
 * reference_integer_ops::Add / BroadcastAdd4DSlow: both inputs shifted left by left_shift and
 * rescaled to a common scale, summed, then the output stage; broadcasting through strides of
 * 0. Fast path (EQ_FAST, no broadcasting, normalized multipliers, right shifts of 0 to 30):
 * the three rescalings in the exact SMMLAR form of eq_internal.h (eq_rqu_apply), a few
 * instructions each instead of the 64-bit MultiplyByQuantizedMultiplier.
 */
#include "eq_internal.h"

#if EQ_FAST
/* One rescaling as eq_rqu_t for a value |a| < 2^29 (inputs: (x + offset) * 2^20 with x int8;
 * the sum of two such rescaled values), or 0 when (M, shift) has no exact short form:
 * M in [2^30, 2^31), shift in [-30, 0]. */
static int eq_add_stage(int32_t multiplier, int32_t shift, eq_rqu_t *u)
{
    if (multiplier < (1 << 30) || shift > 0 || shift < -30) {
        return 0;
    }
    u->m2 = (int32_t)((uint32_t)multiplier << 1);
    u->right = -shift;
    u->left = 0;
    u->add = shift < 0 ? (int32_t)((uint32_t)1 << (-shift - 1)) : 0;
    u->sign = shift < 0 ? -1 : 0;
    u->after = 0;
    return 1;
}

static int eq_add_contiguous(const int32_t *strides, const int32_t *dims)
{
    return strides[3] == 1 && strides[2] == dims[3] && strides[1] == dims[2] * dims[3]
           && strides[0] == dims[1] * dims[2] * dims[3];
}

static int eq_add_fast(const eq_add_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    const int32_t n = p->out_dims[0] * p->out_dims[1] * p->out_dims[2] * p->out_dims[3];
    const int32_t off1 = p->in1_offset, off2 = p->in2_offset, shift = p->left_shift;
    const int32_t offset = p->out_offset, lo = p->act_min, hi = p->act_max;
    eq_rqu_t u1, u2, uo;
    int32_t i;
    if (shift != 20 || !eq_add_contiguous(p->in1_strides, p->out_dims)
        || !eq_add_contiguous(p->in2_strides, p->out_dims)
        || !eq_add_stage(p->in1_multiplier, p->in1_shift, &u1)
        || !eq_add_stage(p->in2_multiplier, p->in2_shift, &u2)
        || !eq_add_stage(p->out_multiplier, p->out_shift, &uo)) {
        return 0;
    }
    for (i = 0; i < n; ++i) {
        /* |(x + offset) * 2^20| < 2^28; each rescaled |s| <= that; |s1 + s2| < 2^29 */
        const int32_t s1 = eq_rqu_apply(&u1, (in1[i] + off1) * (1 << 20));
        const int32_t s2 = eq_rqu_apply(&u2, (in2[i] + off2) * (1 << 20));
        const int32_t r = eq_rqu_apply(&uo, s1 + s2) + offset;
        out[i] = (int8_t)EQ_CLAMP(r, lo, hi);
    }
    return 1;
}
#endif

/* ---- ADD: reference_integer_ops::Add / BroadcastAdd4DSlow ------------------------------ */

void eq_add(const eq_add_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    int32_t i0, i1, i2, i3, n = 0;
#if EQ_FAST
    if (eq_add_fast(p, in1, in2, out)) {
        return;
    }
#endif
    for (i0 = 0; i0 < p->out_dims[0]; ++i0) {
        for (i1 = 0; i1 < p->out_dims[1]; ++i1) {
            for (i2 = 0; i2 < p->out_dims[2]; ++i2) {
                for (i3 = 0; i3 < p->out_dims[3]; ++i3) {
                    const int32_t a = i0 * p->in1_strides[0] + i1 * p->in1_strides[1]
                                      + i2 * p->in1_strides[2] + i3 * p->in1_strides[3];
                    const int32_t c = i0 * p->in2_strides[0] + i1 * p->in2_strides[1]
                                      + i2 * p->in2_strides[2] + i3 * p->in2_strides[3];
                    const int32_t x1 = eq_shl(in1[a] + p->in1_offset, p->left_shift);
                    const int32_t x2 = eq_shl(in2[c] + p->in2_offset, p->left_shift);
                    const int32_t s1 = eq_mbqm(x1, p->in1_multiplier, p->in1_shift);
                    const int32_t s2 = eq_mbqm(x2, p->in2_multiplier, p->in2_shift);
                    int32_t r = eq_mbqm(s1 + s2, p->out_multiplier, p->out_shift)
                                + p->out_offset;
                    out[n++] = (int8_t)EQ_CLAMP(r, p->act_min, p->act_max);
                }
            }
        }
    }
}
