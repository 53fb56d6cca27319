/* edgeq kernels: requantization (every engine compiles this file).
 *
 * eq_multiply_by_quantized_multiplier is TFLite's MultiplyByQuantizedMultiplier with double
 * rounding: x * 2^left, SaturatingRoundingDoublingHighMul by the Q0.31 multiplier, then
 * RoundingDivideByPOT by the right shift. Every kernel's output stage is this (the fast paths'
 * few-instruction forms in eq_internal.h give the same results). eq_requantize is QUANTIZE
 * int8 -> int8 (reference_ops::Requantize). No fast path.
 */
#include "eq_internal.h"

int32_t eq_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return eq_rdbpot(eq_srdhm(eq_shl(x, left), multiplier), right);
}

/* ---- QUANTIZE int8 -> int8: reference_ops::Requantize ---------------------------------- */

void eq_requantize(const eq_requantize_t *p, const int8_t *in, int8_t *out)
{
    int32_t i;
    for (i = 0; i < p->count; ++i) {
        const int32_t v = eq_mbqm(in[i] - p->in_zero_point, p->multiplier, p->shift)
                          + p->out_zero_point;
        out[i] = (int8_t)EQ_CLAMP(v, -128, 127);
    }
}
