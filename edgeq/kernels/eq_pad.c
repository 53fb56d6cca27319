/* edgeq kernels: PAD (eq_pad).
 *
 * reference_ops::Pad on four dimensions, the pad value being the output zero point: each
 * output value is the input value it lies on, or the pad value. No fast path.
 */
#include "eq_internal.h"

/* ---- PAD: reference_ops::Pad with the output zero point as the pad value ---------------- */

void eq_pad(const eq_pad_t *p, const int8_t *in, int8_t *out)
{
    int32_t od[4], i[4], d, n = 0;
    for (d = 0; d < 4; ++d) {
        od[d] = p->before[d] + p->in_dims[d] + p->after[d];
    }
    for (i[0] = 0; i[0] < od[0]; ++i[0]) {
        for (i[1] = 0; i[1] < od[1]; ++i[1]) {
            for (i[2] = 0; i[2] < od[2]; ++i[2]) {
                for (i[3] = 0; i[3] < od[3]; ++i[3]) {
                    int inside = 1;
                    for (d = 0; d < 4; ++d) {
                        if (i[d] < p->before[d] || i[d] >= p->before[d] + p->in_dims[d]) {
                            inside = 0;
                        }
                    }
                    out[n++] = inside
                        ? in[(((i[0] - p->before[0]) * p->in_dims[1] + i[1] - p->before[1])
                              * p->in_dims[2] + i[2] - p->before[2]) * p->in_dims[3]
                             + i[3] - p->before[3]]
                        : p->value;
                }
            }
        }
    }
}
