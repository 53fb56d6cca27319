/* edgeq kernels: element-wise int8 activations as 256-entry tables (eq_lut).
 *
 * LEAKY_RELU (reference_ops::QuantizeLeakyRelu), LOGISTIC (reference_integer_ops::Logistic),
 * TANH (reference_integer_ops::Tanh) and HARD_SWISH (reference_ops::HardSwish) each map one
 * int8 value to one int8 value. The generator evaluates the op's integer arithmetic, as TFLM's
 * reference kernel does it (Prepare-time multipliers from the float32 scales, gemmlowp fixed
 * point), on all 256 inputs (edgeq.intmath.*_table) and stores the results; the kernel is one
 * lookup per value, which is also the fast path on every core (one load and one store; the
 * fixed-point code it replaces takes tens of instructions per value).
 */
#include "eq_internal.h"

/* ---- LEAKY_RELU / LOGISTIC / TANH / HARD_SWISH: a table lookup ------------------------- */

void eq_lut(const eq_lut_t *p, const int8_t *in, int8_t *out)
{
    const int8_t *table = p->table;
    int32_t i;
    for (i = 0; i < p->count; ++i) {
        out[i] = table[(int32_t)in[i] + 128];
    }
}
