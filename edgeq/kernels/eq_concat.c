/* edgeq kernels: CONCATENATION (eq_concat).
 *
 * reference_ops::Concatenation for int8 inputs that share the output's scale and zero point
 * (TFLM's requirement): per outer step, each input's bytes copied in turn. No fast path.
 */
#include "eq_internal.h"

/* ---- CONCATENATION (int8 inputs share the output's scale and zero point in TFLM) -------- */

void eq_concat(const eq_concat_t *p, const int8_t *const *ins, int8_t *out)
{
    int32_t o, k;
    for (o = 0; o < p->outer; ++o) {
        for (k = 0; k < p->num_inputs; ++k) {
            memcpy(out, ins[k] + o * p->copy[k], (size_t)p->copy[k]);
            out += p->copy[k];
        }
    }
}
