/* edgeq kernels: SOFTMAX (eq_softmax).
 *
 * reference_ops::Softmax int8 -> int8: per row, the difference to the row's maximum scaled
 * into Q5.26, exp by gemmlowp's exp_on_negative_values (Q0.31), the sum, its reciprocal by
 * one_over_one_plus_x_for_x_in_0_1, and each output shifted down to int8. All fixed point,
 * as in TFLM. No fast path.
 */
#include "eq_internal.h"

/* ---- SOFTMAX: reference_ops::Softmax (int8 -> int8), gemmlowp fixed-point exp ------------ */

static int32_t eq_add_wrap(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

static int32_t eq_sat_shl(int32_t x, int32_t exponent) /* SaturatingRoundingMultiplyByPOT>0 */
{
    const int32_t threshold = (int32_t)(((uint32_t)1 << (31 - exponent)) - 1u);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return eq_shl(x, exponent);
}

/* exp(x) for x in [-1/4, 0), Q0.31 in and out */
static int32_t eq_exp_quarter(int32_t a)
{
    const int32_t constant_term = 1895147668;    /* exp(-1/8) */
    const int32_t constant_1_over_3 = 715827883; /* 1/3 */
    const int32_t x = eq_add_wrap(a, 1 << 28);   /* a + 1/8 */
    const int32_t x2 = eq_srdhm(x, x);
    const int32_t x3 = eq_srdhm(x2, x);
    const int32_t x4 = eq_srdhm(x2, x2);
    const int32_t x4_over_4 = eq_rdbpot(x4, 2);
    const int32_t poly = eq_rdbpot(
        eq_add_wrap(eq_srdhm(eq_add_wrap(x4_over_4, x3), constant_1_over_3), x2), 1);
    return eq_add_wrap(constant_term, eq_srdhm(constant_term, eq_add_wrap(x, poly)));
}

/* exp(a) for a <= 0, a in Q5.26, result Q0.31 (gemmlowp exp_on_negative_values<5>) */
static int32_t eq_exp_on_negative_values(int32_t a)
{
    static const int32_t multipliers[7] = {
        1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int32_t one_quarter = 1 << 24;
    const int32_t a_mod = eq_add_wrap(a & (one_quarter - 1), -one_quarter);
    int32_t result = eq_exp_quarter(eq_sat_shl(a_mod, 5));
    const int32_t remainder = eq_add_wrap(a_mod, -a);
    int32_t k;
    for (k = 0; k < 7; ++k) { /* exponents -2 .. +4 */
        if (remainder & (int32_t)((uint32_t)1 << (26 - 2 + k))) {
            result = eq_srdhm(result, multipliers[k]);
        }
    }
    return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + x) for x in [0, 1), Q0.31 (gemmlowp one_over_one_plus_x_for_x_in_0_1) */
static int32_t eq_one_over_one_plus_x(int32_t a)
{
    const int64_t sum = (int64_t)a + INT32_MAX;
    const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    const int32_t constant_48_over_17 = 1515870810;
    const int32_t constant_neg_32_over_17 = -1010580540;
    int32_t x = eq_add_wrap(constant_48_over_17,
                            eq_srdhm(half_denominator, constant_neg_32_over_17));
    int32_t i;
    for (i = 0; i < 3; ++i) {
        const int32_t half_denominator_times_x = eq_srdhm(half_denominator, x);
        const int32_t one_minus = eq_add_wrap(1 << 29, -half_denominator_times_x);
        x = eq_add_wrap(x, eq_sat_shl(eq_srdhm(x, one_minus), 2));
    }
    return eq_sat_shl(x, 1);
}

static int32_t eq_count_leading_zeros(uint32_t x)
{
    int32_t n = 0;
    if (x == 0) {
        return 32;
    }
    while (!(x & 0x80000000u)) {
        x <<= 1;
        ++n;
    }
    return n;
}

void eq_softmax(const eq_softmax_t *p, const int8_t *in, int8_t *out)
{
    int32_t i, c;
    for (i = 0; i < p->outer; ++i) {
        const int8_t *row = in + i * p->depth;
        int8_t *dst = out + i * p->depth;
        int32_t max_in_row = -128, sum_of_exps = 0, headroom, num_bits_over_unit, exponent;
        int32_t shifted_scale;
        for (c = 0; c < p->depth; ++c) {
            max_in_row = EQ_MAX(max_in_row, row[c]);
        }
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = row[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t scaled = eq_srdhm(eq_shl(diff, p->input_left_shift),
                                                p->input_multiplier);
                sum_of_exps = eq_add_wrap(sum_of_exps,
                                          eq_rdbpot(eq_exp_on_negative_values(scaled), 12));
            }
        }
        headroom = eq_count_leading_zeros((uint32_t)sum_of_exps);
        num_bits_over_unit = 12 - headroom;
        shifted_scale = eq_one_over_one_plus_x(
            (int32_t)(((uint32_t)sum_of_exps << headroom) - ((uint32_t)1 << 31)));
        exponent = num_bits_over_unit + 31 - 8;
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = row[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t scaled = eq_srdhm(eq_shl(diff, p->input_left_shift),
                                                p->input_multiplier);
                const int32_t e = eq_exp_on_negative_values(scaled);
                const int32_t v = eq_rdbpot(eq_srdhm(shifted_scale, e), exponent) - 128;
                dst[c] = (int8_t)EQ_CLAMP(v, -128, 127);
            } else {
                dst[c] = -128;
            }
        }
    }
}
