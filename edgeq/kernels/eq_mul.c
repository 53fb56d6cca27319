/* edgeq kernels: MUL (eq_mul).
 *
 * reference_integer_ops::Mul / BroadcastMul4DSlow: (x1 + offset1) * (x2 + offset2), a product
 * of at most 2^16, requantized by MultiplyByQuantizedMultiplier (s1 * s2 / s_out), plus the
 * output offset, then the fused activation's clamp. Broadcasting through strides of 0, as
 * eq_add; a squeeze-and-excitation block's [1, h, w, c] x [1, 1, 1, c] takes the inner loop
 * over the channels with the scale vector's offset applied once per channel. No DSP fast
 * path: the requantization is most of the work and needs the 64-bit form for arbitrary
 * multipliers.
 */
#include "eq_internal.h"

/* ---- MUL: reference_integer_ops::Mul / BroadcastMul4DSlow ------------------------------ */

void eq_mul(const eq_mul_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    int32_t i0, i1, i2, i3, n = 0;
    for (i0 = 0; i0 < p->out_dims[0]; ++i0) {
        for (i1 = 0; i1 < p->out_dims[1]; ++i1) {
            for (i2 = 0; i2 < p->out_dims[2]; ++i2) {
                const int32_t a0 = i0 * p->in1_strides[0] + i1 * p->in1_strides[1]
                                   + i2 * p->in1_strides[2];
                const int32_t c0 = i0 * p->in2_strides[0] + i1 * p->in2_strides[1]
                                   + i2 * p->in2_strides[2];
                for (i3 = 0; i3 < p->out_dims[3]; ++i3) {
                    const int32_t x1 = in1[a0 + i3 * p->in1_strides[3]] + p->in1_offset;
                    const int32_t x2 = in2[c0 + i3 * p->in2_strides[3]] + p->in2_offset;
                    const int32_t r = eq_mbqm(x1 * x2, p->multiplier, p->shift)
                                      + p->out_offset;
                    out[n++] = (int8_t)EQ_CLAMP(r, p->act_min, p->act_max);
                }
            }
        }
    }
}
