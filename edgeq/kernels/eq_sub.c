/* edgeq kernels: SUB (eq_sub).
 *
 * TFLM's int8 SUB (sub.cc, reference_ops::SubElementwise / BroadcastSubSlow): ADD's
 * arithmetic (eq_add_t: both inputs shifted left by left_shift, rescaled to 1 / (2 * max
 * scale)) with the second rescaled input subtracted from the first, then the output stage
 * and the fused activation's clamp. Broadcasting through strides of 0, as eq_add. No fast
 * path: SUB is rare in the models edgeq targets (a U-Net's difference, a normalization) and
 * the portable loop is a few dozen instructions per value.
 */
#include "eq_internal.h"

/* ---- SUB: reference integer Sub / BroadcastSubSlow -------------------------------------- */

void eq_sub(const eq_add_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
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
                    const int32_t x1 = eq_shl(in1[a0 + i3 * p->in1_strides[3]] + p->in1_offset,
                                              p->left_shift);
                    const int32_t x2 = eq_shl(in2[c0 + i3 * p->in2_strides[3]] + p->in2_offset,
                                              p->left_shift);
                    const int32_t s1 = eq_mbqm(x1, p->in1_multiplier, p->in1_shift);
                    const int32_t s2 = eq_mbqm(x2, p->in2_multiplier, p->in2_shift);
                    const int32_t r = eq_mbqm(s1 - s2, p->out_multiplier, p->out_shift)
                                      + p->out_offset;
                    out[n++] = (int8_t)EQ_CLAMP(r, p->act_min, p->act_max);
                }
            }
        }
    }
}
