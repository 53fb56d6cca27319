/* edgeq kernels: FULLY_CONNECTED (eq_fully_connected).
 *
 * reference_integer_ops::FullyConnected and FullyConnectedPerChannel: one dot product per
 * output over accum_depth int8 or int4 weights, input and weight offsets added, then the
 * output stage per tensor or per channel. No fast path (the layers this engine meets are
 * small next to the convolutions).
 */
#include "eq_internal.h"

/* ---- FULLY_CONNECTED: reference_integer_ops::FullyConnected(PerChannel) ---------------- */

void eq_fully_connected(const eq_fully_connected_t *p, const int8_t *in, int8_t *out)
{
    int32_t b, o, d;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *row = in + b * p->accum_depth;
        for (o = 0; o < p->out_depth; ++o) {
            const int32_t q = p->per_channel ? o : 0;
            const int32_t wi = o * p->accum_depth;
            int32_t acc = 0;
            for (d = 0; d < p->accum_depth; ++d) {
                acc += (eq_weight(p->weights, wi + d, p->weight_bits) + p->weight_offset)
                       * (row[d] + p->in_offset);
            }
            if (p->bias) {
                acc += p->bias[o];
            }
            acc = eq_mbqm(acc, p->multiplier[q], p->shift[q]) + p->out_offset;
            out[b * p->out_depth + o] = (int8_t)EQ_CLAMP(acc, p->act_min, p->act_max);
        }
    }
}
