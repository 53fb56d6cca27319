/* edgeq kernels, portable C99: bit-exact with TFLite Micro's reference int8 kernels.
 *
 * Part of edgeq (Apache-2.0). Written from the TFLite arithmetic specification (gemmlowp
 * fixed point, double-rounding requantization); each function names the TFLM kernel whose
 * results it reproduces. Integer overflow is avoided with unsigned arithmetic where TFLM
 * relies on two's complement wrapping, so the code is clean under UBSan.
 */
#include "edgeq_kernels.h"

#include <string.h>

#define EQ_MIN(a, b) ((a) < (b) ? (a) : (b))
#define EQ_MAX(a, b) ((a) > (b) ? (a) : (b))
#define EQ_CLAMP(x, lo, hi) EQ_MIN(EQ_MAX((x), (lo)), (hi))

/* ---- fixed point (gemmlowp) ------------------------------------------------------------ */

static int32_t eq_srdhm(int32_t a, int32_t b) /* SaturatingRoundingDoublingHighMul */
{
    int64_t ab, nudge;
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    ab = (int64_t)a * (int64_t)b;
    nudge = ab >= 0 ? (int64_t)(1 << 30) : (int64_t)(1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

static int32_t eq_rdbpot(int32_t x, int32_t exponent) /* RoundingDivideByPOT */
{
    const int32_t mask = (int32_t)(((uint32_t)1 << exponent) - 1u);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

static int32_t eq_shl(int32_t x, int32_t n) /* x * 2^n, wrapping like TFLM's int32 math */
{
    return (int32_t)((uint32_t)x << n);
}

int32_t eq_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return eq_rdbpot(eq_srdhm(eq_shl(x, left), multiplier), right);
}

#define eq_mbqm eq_multiply_by_quantized_multiplier

/* A weight, int8 or int4 (two per byte, first in the low nibble). */
static int32_t eq_weight(const int8_t *w, int32_t i, int32_t bits)
{
    if (bits == 4) {
        const uint8_t b = (uint8_t)w[i >> 1];
        const int32_t nibble = (i & 1) ? (int32_t)(b >> 4) : (int32_t)(b & 0x0F);
        return nibble >= 8 ? nibble - 16 : nibble;
    }
    return w[i];
}

/* ---- CONV_2D: reference_integer_ops::ConvPerChannel ----------------------------------- */

void eq_conv2d(const eq_conv_t *p, const int8_t *in, int8_t *out)
{
    const int32_t groups = p->in_c / p->filter_in_c;
    const int32_t filters_per_group = p->out_c / groups;
    int32_t b, oy, ox, oc, fy, fx, ic;
    for (b = 0; b < p->batches; ++b) {
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t in_y0 = oy * p->stride_h - p->pad_h;
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t in_x0 = ox * p->stride_w - p->pad_w;
                for (oc = 0; oc < p->out_c; ++oc) {
                    const int32_t group = oc / filters_per_group;
                    int32_t acc = 0;
                    for (fy = 0; fy < p->filter_h; ++fy) {
                        const int32_t iy = in_y0 + p->dilation_h * fy;
                        if (iy < 0 || iy >= p->in_h) {
                            continue;
                        }
                        for (fx = 0; fx < p->filter_w; ++fx) {
                            const int32_t ix = in_x0 + p->dilation_w * fx;
                            const int8_t *ip;
                            int32_t wi;
                            if (ix < 0 || ix >= p->in_w) {
                                continue;
                            }
                            ip = in + ((b * p->in_h + iy) * p->in_w + ix) * p->in_c
                                 + group * p->filter_in_c;
                            wi = ((oc * p->filter_h + fy) * p->filter_w + fx) * p->filter_in_c;
                            for (ic = 0; ic < p->filter_in_c; ++ic) {
                                acc += eq_weight(p->weights, wi + ic, p->weight_bits)
                                       * (ip[ic] + p->in_offset);
                            }
                        }
                    }
                    if (p->bias) {
                        acc += p->bias[oc];
                    }
                    acc = eq_mbqm(acc, p->multiplier[oc], p->shift[oc]) + p->out_offset;
                    out[((b * p->out_h + oy) * p->out_w + ox) * p->out_c + oc] =
                        (int8_t)EQ_CLAMP(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

/* ---- DEPTHWISE_CONV_2D: reference_integer_ops::DepthwiseConvPerChannel ----------------- */

void eq_depthwise_conv2d(const eq_depthwise_t *p, const int8_t *in, int8_t *out)
{
    int32_t b, oy, ox, ic, m, fy, fx;
    for (b = 0; b < p->batches; ++b) {
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t in_y0 = oy * p->stride_h - p->pad_h;
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t in_x0 = ox * p->stride_w - p->pad_w;
                for (ic = 0; ic < p->in_c; ++ic) {
                    for (m = 0; m < p->depth_multiplier; ++m) {
                        const int32_t oc = m + ic * p->depth_multiplier;
                        int32_t acc = 0;
                        for (fy = 0; fy < p->filter_h; ++fy) {
                            const int32_t iy = in_y0 + p->dilation_h * fy;
                            if (iy < 0 || iy >= p->in_h) {
                                continue;
                            }
                            for (fx = 0; fx < p->filter_w; ++fx) {
                                const int32_t ix = in_x0 + p->dilation_w * fx;
                                int32_t v;
                                if (ix < 0 || ix >= p->in_w) {
                                    continue;
                                }
                                v = in[((b * p->in_h + iy) * p->in_w + ix) * p->in_c + ic];
                                acc += eq_weight(p->weights,
                                                 (fy * p->filter_w + fx) * p->out_c + oc,
                                                 p->weight_bits)
                                       * (v + p->in_offset);
                            }
                        }
                        if (p->bias) {
                            acc += p->bias[oc];
                        }
                        acc = eq_mbqm(acc, p->multiplier[oc], p->shift[oc]) + p->out_offset;
                        out[((b * p->out_h + oy) * p->out_w + ox) * p->out_c + oc] =
                            (int8_t)EQ_CLAMP(acc, p->act_min, p->act_max);
                    }
                }
            }
        }
    }
}

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

/* ---- ADD: reference_integer_ops::Add / BroadcastAdd4DSlow ------------------------------ */

void eq_add(const eq_add_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    int32_t i0, i1, i2, i3, n = 0;
    for (i0 = 0; i0 < p->out_dims[0]; ++i0) {
        for (i1 = 0; i1 < p->out_dims[1]; ++i1) {
            for (i2 = 0; i2 < p->out_dims[2]; ++i2) {
                for (i3 = 0; i3 < p->out_dims[3]; ++i3) {
                    const int32_t a = i0 * p->in1_strides[0] + i1 * p->in1_strides[1]
                                      + i2 * p->in1_strides[2] + i3 * p->in1_strides[3];
                    const int32_t c = i0 * p->in2_strides[0] + i1 * p->in2_strides[1]
                                      + i2 * p->in2_strides[2] + i3 * p->in2_strides[3];
                    const int32_t x1 = eq_shl(in1[a] + p->in1_offset, p->left_shift);
                    const int32_t x2 = eq_shl(in2[c] + p->in2_offset, p->left_shift);
                    const int32_t s1 = eq_mbqm(x1, p->in1_multiplier, p->in1_shift);
                    const int32_t s2 = eq_mbqm(x2, p->in2_multiplier, p->in2_shift);
                    int32_t r = eq_mbqm(s1 + s2, p->out_multiplier, p->out_shift)
                                + p->out_offset;
                    out[n++] = (int8_t)EQ_CLAMP(r, p->act_min, p->act_max);
                }
            }
        }
    }
}

/* ---- AVERAGE_POOL_2D / MAX_POOL_2D: reference_integer_ops::AveragePool / MaxPool -------- */

static void eq_pool(const eq_pool_t *p, const int8_t *in, int8_t *out, int average)
{
    int32_t b, oy, ox, c, fy, fx;
    for (b = 0; b < p->batches; ++b) {
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t in_y0 = oy * p->stride_h - p->pad_h;
            const int32_t fy0 = EQ_MAX(0, -in_y0);
            const int32_t fy1 = EQ_MIN(p->filter_h, p->in_h - in_y0);
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t in_x0 = ox * p->stride_w - p->pad_w;
                const int32_t fx0 = EQ_MAX(0, -in_x0);
                const int32_t fx1 = EQ_MIN(p->filter_w, p->in_w - in_x0);
                for (c = 0; c < p->channels; ++c) {
                    int32_t acc = average ? 0 : -128;
                    int32_t count = 0;
                    for (fy = fy0; fy < fy1; ++fy) {
                        for (fx = fx0; fx < fx1; ++fx) {
                            const int32_t v = in[((b * p->in_h + in_y0 + fy) * p->in_w
                                                  + in_x0 + fx) * p->channels + c];
                            if (average) {
                                acc += v;
                            } else {
                                acc = EQ_MAX(acc, v);
                            }
                            ++count;
                        }
                    }
                    if (average && count > 0) {
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    }
                    out[((b * p->out_h + oy) * p->out_w + ox) * p->channels + c] =
                        (int8_t)EQ_CLAMP(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

void eq_average_pool(const eq_pool_t *p, const int8_t *in, int8_t *out)
{
    eq_pool(p, in, out, 1);
}

void eq_max_pool(const eq_pool_t *p, const int8_t *in, int8_t *out)
{
    eq_pool(p, in, out, 0);
}

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

void eq_copy(const int8_t *in, int8_t *out, int32_t bytes)
{
    if (in != out) {
        memmove(out, in, (size_t)bytes);
    }
}
