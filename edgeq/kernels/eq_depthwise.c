/* edgeq kernels: DEPTHWISE_CONV_2D (eq_depthwise_conv2d).
 *
 * Reference: reference_integer_ops::DepthwiseConvPerChannel, one output channel at one pixel
 * at a time, any depth multiplier, stride, dilation and padding.
 * Fast paths (EQ_FAST, depth multiplier 1, no dilation, a scratch), channel quad by channel
 * quad, from int16 rows of one channel with the input offset added (the padding 0), so that
 * one word holds a channel's values at two neighbouring columns:
 * - 3x3 filters, strides 1 and 2 across: eq_depthwise3x3_pairs (below), two outputs at a time
 *   from planes of a band of rows, in assembly for the folded output stage and small left
 *   shifts (eq_depthwise_run.h);
 * - 1x3 filters: the strips (eq_depthwise_strips.h, eq_depthwise_asm.h): each channel's output
 *   row is one strip with its weights, bias and output stage in registers, per output pixel
 *   one load, one SMLAD (taps 0 and 1) and one SMLAxy (tap 2 of the pixel before).
 */
#include "eq_internal.h"
#include "eq_depthwise_strips.h"

static int32_t eq_depthwise_one(const eq_depthwise_t *p, const int8_t *in, int32_t b,
                                int32_t oy, int32_t ox, int32_t c);

#if EQ_FAST
/* One channel through the reference code (border and interior alike). */
static void eq_dw_channel(const eq_depthwise_t *p, const int8_t *in, int8_t *out, int32_t b,
                          int32_t c)
{
    const eq_out_t o = {p->multiplier, p->shift, p->out_offset, p->act_min, p->act_max};
    int32_t oy, ox;
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            out[((b * p->out_h + oy) * p->out_w + ox) * p->in_c + c] =
                eq_output(o, eq_depthwise_one(p, in, b, oy, ox, c), c);
        }
    }
}

#include "eq_depthwise_pairs.h"
#endif /* EQ_FAST */



/* ---- DEPTHWISE_CONV_2D: reference_integer_ops::DepthwiseConvPerChannel ----------------- */

/* The accumulator of one output channel at one pixel, bias included. */
static int32_t eq_depthwise_one(const eq_depthwise_t *p, const int8_t *in, int32_t b,
                                int32_t oy, int32_t ox, int32_t oc)
{
    const int32_t in_y0 = oy * p->stride_h - p->pad_h;
    const int32_t in_x0 = ox * p->stride_w - p->pad_w;
    const int32_t ic = oc / p->depth_multiplier;
    int32_t acc = p->bias ? p->bias[oc] : 0, fy, fx;
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
            acc += eq_weight(p->weights, (fy * p->filter_w + fx) * p->out_c + oc,
                             p->weight_bits) * (v + p->in_offset);
        }
    }
    return acc;
}

void eq_depthwise_conv2d_1x3(const eq_depthwise_t *p, const int8_t *in, int8_t *out,
                             int8_t *scratch)
{
#if EQ_FAST
    if (scratch != NULL && p->depth_multiplier == 1 && p->filter_h == 1 && p->filter_w == 3
        && p->dilation_h == 1 && p->dilation_w == 1) {
        if (eq_dw_planes_fit(p)) {
            eq_depthwise3x3_planes(p, in, out, scratch);
        } else {
#if EQ_ASM
            eq_depthwise3x3_fast(p, in, out, scratch,
                                 p->stride_w == 1 ? eq_dwp1_s1 : eq_dwp1_s2);
#else
            eq_depthwise3x3_fast(p, in, out, scratch, NULL);
#endif
        }
        return;
    }
#endif
    eq_depthwise_conv2d(p, in, out, scratch);
}

void eq_depthwise_conv2d(const eq_depthwise_t *p, const int8_t *in, int8_t *out,
                         int8_t *scratch)
{
    int32_t b, oy, ox, oc;
#if EQ_FAST
    if (scratch != NULL && p->depth_multiplier == 1 && p->filter_h == 3 && p->filter_w == 3
        && p->dilation_h == 1 && p->dilation_w == 1 && p->stride_w <= 2) {
        eq_depthwise3x3_pairs(p, in, out, scratch);
        return;
    }
#else
    (void)scratch;
#endif
    for (b = 0; b < p->batches; ++b) {
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                for (oc = 0; oc < p->out_c; ++oc) {
                    int32_t acc = eq_depthwise_one(p, in, b, oy, ox, oc);
                    acc = eq_mbqm(acc, p->multiplier[oc], p->shift[oc]) + p->out_offset;
                    out[((b * p->out_h + oy) * p->out_w + ox) * p->out_c + oc] =
                        (int8_t)EQ_CLAMP(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}
