/* edgeq kernels: MAXIMUM and MINIMUM (eq_maximum, eq_minimum).
 *
 * reference_ops::MaximumMinimumBroadcastSlow on int8: the larger (smaller) of the two stored
 * values. Both inputs share the output's scale and zero point (the writer checks it, as the
 * converter requantizes them), so the stored values order as the real ones and no
 * arithmetic is needed. Broadcasting through strides of 0, as eq_add. The inner loop over the
 * last axis is one compare per value on every core, so there is no separate fast path.
 */
#include "eq_internal.h"

/* ---- MAXIMUM / MINIMUM: reference_ops::MaximumMinimumBroadcastSlow ---------------------- */

static void eq_min_max(const eq_minmax_t *p, const int8_t *in1, const int8_t *in2,
                       int8_t *out, int maximum)
{
    int32_t i0, i1, i2, i3, n = 0;
    for (i0 = 0; i0 < p->out_dims[0]; ++i0) {
        for (i1 = 0; i1 < p->out_dims[1]; ++i1) {
            for (i2 = 0; i2 < p->out_dims[2]; ++i2) {
                const int8_t *a = in1 + i0 * p->in1_strides[0] + i1 * p->in1_strides[1]
                                  + i2 * p->in1_strides[2];
                const int8_t *c = in2 + i0 * p->in2_strides[0] + i1 * p->in2_strides[1]
                                  + i2 * p->in2_strides[2];
                for (i3 = 0; i3 < p->out_dims[3]; ++i3) {
                    const int8_t x1 = a[i3 * p->in1_strides[3]];
                    const int8_t x2 = c[i3 * p->in2_strides[3]];
                    out[n++] = maximum ? EQ_MAX(x1, x2) : EQ_MIN(x1, x2);
                }
            }
        }
    }
}

void eq_maximum(const eq_minmax_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    eq_min_max(p, in1, in2, out, 1);
}

void eq_minimum(const eq_minmax_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    eq_min_max(p, in1, in2, out, 0);
}
