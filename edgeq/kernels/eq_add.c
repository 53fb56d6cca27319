/* edgeq kernels: ADD (eq_add) and SUB (eq_sub).
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

/* The input is read element by element in order: every axis longer than 1 has the stride of
 * a contiguous tensor (axes of length 1 may have any, e.g. 0). */
static int eq_add_contiguous(const int32_t *strides, const int32_t *dims)
{
    int32_t axis, step = 1;
    for (axis = 3; axis >= 0; --axis) {
        if (dims[axis] != 1 && strides[axis] != step) {
            return 0;
        }
        step *= dims[axis];
    }
    return 1;
}

/* One input's (M, shift) is exactly (2^30, 0), the rescaling of the larger-scale input by
 * TFLite's 1 / (2 * max scale): SRDHM(x * 2^20, 2^30) = (x * 2^20 + 1) >> 1 = x * 2^19. */
static int eq_add_half(int32_t multiplier, int32_t shift)
{
    return multiplier == (1 << 30) && shift == 0;
}

/* n outputs: input a rescaled by u (right shift >= 1), input b (offset ob) halved, the output
 * stage uo (right shift >= 1), whole int8 clamp. */
static void eq_add_half_loop(const int8_t *a, const int8_t *b, int8_t *out, int32_t n,
                             int32_t oa, int32_t ob, const eq_rqu_t *u, const eq_rqu_t *uo,
                             int32_t offset)
{
    const uint32_t offa = (uint32_t)oa << 20, offb = (uint32_t)ob << 19;
    const int32_t m1 = u->m2, a1 = u->add, r1 = u->right, mo = uo->m2, ao = uo->add;
    const int32_t ro = (int32_t)(((uint32_t)offset << 16) | (uint32_t)uo->right);
#if EQ_ASM
    const int8_t *end = out + n;
    uint32_t x, t;
    if (n <= 0) {
        return;
    }
    __asm volatile(
        "1:\n\t"
        "ldrsb   %[x], [%[a]], #1\n\t"
        "add     %[x], %[offa], %[x], lsl #20\n\t"
        "add     %[t], %[x], %[a1]\n\t"
        "add     %[t], %[t], %[x], asr #31\n\t"
        "smmlar  %[t], %[x], %[m1], %[t]\n\t"
        "asr     %[t], %[t], %[r1]\n\t"
        "ldrsb   %[x], [%[b]], #1\n\t"
        "add     %[x], %[offb], %[x], lsl #19\n\t"
        "add     %[x], %[x], %[t]\n\t"
        "add     %[t], %[x], %[ao]\n\t"
        "add     %[t], %[t], %[x], asr #31\n\t"
        "smmlar  %[t], %[x], %[mo], %[t]\n\t"
        "asr     %[t], %[t], %[ro]\n\t"
        "add     %[t], %[t], %[ro], asr #16\n\t"
        "ssat    %[t], #8, %[t]\n\t"
        "strb    %[t], [%[o]], #1\n\t"
        "ldr     %[t], %[endm]\n\t"
        "cmp     %[o], %[t]\n\t"
        "bne     1b\n\t"
        : [a] "+r"(a), [b] "+r"(b), [o] "+r"(out), [x] "=&r"(x), [t] "=&r"(t)
        : [offa] "r"(offa), [offb] "r"(offb), [m1] "r"(m1), [a1] "r"(a1), [r1] "r"(r1),
          [mo] "r"(mo), [ao] "r"(ao), [ro] "r"(ro), [endm] "m"(end)
        : "cc", "memory");
#else
    int32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t x1 = (int32_t)(offa + ((uint32_t)a[i] << 20));
        const int32_t s1 = eq_smmlar(x1, m1, x1 + a1 + (x1 >> 31)) >> r1;
        const int32_t x = (int32_t)(offb + ((uint32_t)b[i] << 19)) + s1;
        const int32_t r = (eq_smmlar(x, mo, x + ao + (x >> 31)) >> (ro & 0xFF)) + (ro >> 16);
        out[i] = (int8_t)eq_sat8(r);
    }
#endif
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
    if (lo == -128 && hi == 127 && uo.right >= 1) {
        const int half1 = eq_add_half(p->in1_multiplier, p->in1_shift);
        const int half2 = eq_add_half(p->in2_multiplier, p->in2_shift);
        if (half2 && !half1 && u1.right >= 1) {
            eq_add_half_loop(in1, in2, out, n, off1, off2, &u1, &uo, offset);
            return 1;
        }
        if (half1 && !half2 && u2.right >= 1) { /* the sum commutes */
            eq_add_half_loop(in2, in1, out, n, off2, off1, &u2, &uo, offset);
            return 1;
        }
    }
    {
        /* the stages' constants in locals (kept in registers); sign masks -1 or 0 */
        const int32_t m1 = u1.m2, a1 = u1.add, r1 = u1.right, g1 = u1.sign;
        const int32_t m2 = u2.m2, a2 = u2.add, r2 = u2.right, g2 = u2.sign;
        const int32_t mo = uo.m2, ao = uo.add, ro = uo.right, go = uo.sign;
        for (i = 0; i < n; ++i) {
            /* |(x + offset) * 2^20| < 2^28; each rescaled |s| <= that; |s1 + s2| < 2^29 */
            const int32_t x1 = (in1[i] + off1) * (1 << 20), x2 = (in2[i] + off2) * (1 << 20);
            const int32_t s1 = eq_smmlar(x1, m1, x1 + a1 + ((x1 >> 31) & g1)) >> r1;
            const int32_t s2 = eq_smmlar(x2, m2, x2 + a2 + ((x2 >> 31) & g2)) >> r2;
            const int32_t t = s1 + s2;
            const int32_t r = (eq_smmlar(t, mo, t + ao + ((t >> 31) & go)) >> ro) + offset;
            out[i] = (int8_t)EQ_CLAMP(r, lo, hi);
        }
    }
    return 1;
}
#endif

/* ---- ADD and SUB: reference_integer_ops::Add / BroadcastAdd4DSlow, and TFLM's SUB -------- */

/* The portable loop of both: TFLM's SUB (sub.cc, SubElementwise / BroadcastSubSlow) is ADD's
 * arithmetic with the second rescaled input subtracted (sign -1) instead of added (+1). */
static void eq_add_signed(const eq_add_t *p, const int8_t *in1, const int8_t *in2, int8_t *out,
                          int32_t sign)
{
    int32_t i0, i1, i2, i3, n = 0;
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
                    int32_t r = eq_mbqm(s1 + sign * s2, p->out_multiplier, p->out_shift)
                                + p->out_offset;
                    out[n++] = (int8_t)EQ_CLAMP(r, p->act_min, p->act_max);
                }
            }
        }
    }
}

void eq_add(const eq_add_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
#if EQ_FAST
    if (eq_add_fast(p, in1, in2, out)) {
        return;
    }
#endif
    eq_add_signed(p, in1, in2, out, 1);
}

/* SUB has no fast path: it is rare in the models edgeq targets (a U-Net's difference, a
 * normalization) and the portable loop is a few dozen instructions per value. */
void eq_sub(const eq_add_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    eq_add_signed(p, in1, in2, out, -1);
}
