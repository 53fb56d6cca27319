/* edgeq kernels: MEAN (eq_mean).
 *
 * reference_ops::QuantizedMeanOrSum over any of four axes: the sum of the zero-point-corrected
 * inputs, times the multiplier that already holds 1/count, plus the output zero point.
 * No fast path.
 */
#include "eq_internal.h"

/* ---- MEAN: reference_ops::QuantizedMeanOrSum (multiplier already divided by the count) -- */

void eq_mean(const eq_mean_t *p, const int8_t *in, int8_t *out)
{
    int32_t o[4], r[4], kept[4], span[4], stride[4], d, n = 0;
    stride[3] = 1;
    for (d = 2; d >= 0; --d) {
        stride[d] = stride[d + 1] * p->in_dims[d + 1];
    }
    for (d = 0; d < 4; ++d) {
        kept[d] = p->reduce[d] ? 1 : p->in_dims[d];
        span[d] = p->reduce[d] ? p->in_dims[d] : 1;
    }
    for (o[0] = 0; o[0] < kept[0]; ++o[0]) {
        for (o[1] = 0; o[1] < kept[1]; ++o[1]) {
            for (o[2] = 0; o[2] < kept[2]; ++o[2]) {
                for (o[3] = 0; o[3] < kept[3]; ++o[3]) {
                    int32_t sum = 0, v;
                    for (r[0] = 0; r[0] < span[0]; ++r[0]) {
                        for (r[1] = 0; r[1] < span[1]; ++r[1]) {
                            for (r[2] = 0; r[2] < span[2]; ++r[2]) {
                                for (r[3] = 0; r[3] < span[3]; ++r[3]) {
                                    sum += in[(o[0] + r[0]) * stride[0] + (o[1] + r[1]) * stride[1]
                                              + (o[2] + r[2]) * stride[2] + o[3] + r[3]];
                                }
                            }
                        }
                    }
                    v = eq_mbqm(sum - p->in_zero_point * p->count, p->multiplier, p->shift)
                        + p->out_zero_point;
                    out[n++] = (int8_t)EQ_CLAMP(v, -128, 127);
                }
            }
        }
    }
}
