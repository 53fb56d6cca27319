/* edgeq kernels: FULLY_CONNECTED (eq_fully_connected).
 *
 * reference_integer_ops::FullyConnected and FullyConnectedPerChannel: one dot product per
 * output over accum_depth int8 or int4 weights, input and weight offsets added, then the
 * output stage per tensor or per channel. Fast path (EQ_FAST, int8 weights without an
 * offset): four values a step, inputs and weights sign-extended in pairs (SXTAB16 adds the
 * input offset) into two SMLADs; the rest one by one.
 */
#include "eq_internal.h"

/* ---- FULLY_CONNECTED: reference_integer_ops::FullyConnected(PerChannel) ---------------- */

void eq_fully_connected(const eq_fully_connected_t *p, const int8_t *in, int8_t *out)
{
    const int32_t depth = p->accum_depth;
#if EQ_FAST
    const int fast = p->weight_bits == 8 && p->weight_offset == 0;
    const uint32_t off2 = eq_pair16(p->in_offset, p->in_offset);
#endif
    int32_t b, o, d;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *row = in + b * depth;
        for (o = 0; o < p->out_depth; ++o) {
            const int32_t q = p->per_channel ? o : 0;
            const int32_t wi = o * depth;
            int32_t acc = 0;
            d = 0;
#if EQ_FAST
            if (fast) {
                const int8_t *w = p->weights + wi;
                for (; d + 4 <= depth; d += 4) {
                    const uint32_t x = eq_load32(row + d), v = eq_load32(w + d);
                    acc = EQ_SMLAD(EQ_SXTAB16(off2, x), EQ_SXTB16(v), acc);
                    acc = EQ_SMLAD(EQ_SXTAB16_ROR8(off2, x), EQ_SXTB16_ROR8(v), acc);
                }
            }
#endif
            for (; d < depth; ++d) {
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
