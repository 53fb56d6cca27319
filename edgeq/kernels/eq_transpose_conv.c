/* edgeq kernels: TRANSPOSE_CONV (eq_transpose_conv).
 *
 * reference_integer_ops::TransposeConv scatters: every input value times every filter tap is
 * added into an int32 scratch the size of the output at (in_y * stride - pad + ky, ...), then
 * each sum gets the bias and the per-channel output stage. This kernel gathers instead, with
 * the same sums and no scratch: output (oy, ox, oc) adds the taps (ky, kx) for which
 * oy + pad_h - ky is a multiple of stride_h that lands in the input (likewise along x), over
 * all input channels. Integer sums do not depend on their order, so the results are TFLM's.
 * INT8 filters only: TFLM's kernel refuses INT4 filters (hybrid). No DSP fast path yet.
 */
#include "eq_internal.h"

/* ---- TRANSPOSE_CONV: reference_integer_ops::TransposeConv, output-stationary ------------ */

static int32_t eq_transpose_conv_sum(const eq_transpose_conv_t *p, const int8_t *image,
                                     int32_t oy, int32_t ox, int32_t oc)
{
    const int32_t taps = p->filter_h * p->filter_w * p->in_c;
    const int8_t *filter = p->weights + oc * taps;
    int32_t acc = 0, ky, kx, c;
    for (ky = 0; ky < p->filter_h; ++ky) {
        const int32_t ty = oy + p->pad_h - ky;
        const int32_t iy = ty / p->stride_h;
        if (ty < 0 || ty != iy * p->stride_h || iy >= p->in_h) {
            continue;
        }
        for (kx = 0; kx < p->filter_w; ++kx) {
            const int32_t tx = ox + p->pad_w - kx;
            const int32_t ix = tx / p->stride_w;
            const int8_t *x, *w;
            if (tx < 0 || tx != ix * p->stride_w || ix >= p->in_w) {
                continue;
            }
            x = image + (iy * p->in_w + ix) * p->in_c;
            w = filter + (ky * p->filter_w + kx) * p->in_c;
            for (c = 0; c < p->in_c; ++c) {
                acc += ((int32_t)x[c] + p->in_offset) * (int32_t)w[c];
            }
        }
    }
    return acc;
}

void eq_transpose_conv(const eq_transpose_conv_t *p, const int8_t *in, int8_t *out)
{
    int32_t b, oy, ox, oc;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *image = in + b * p->in_h * p->in_w * p->in_c;
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                for (oc = 0; oc < p->out_c; ++oc) {
                    int32_t acc = eq_transpose_conv_sum(p, image, oy, ox, oc);
                    if (p->bias != NULL) {
                        acc += p->bias[oc];
                    }
                    acc = eq_mbqm(acc, p->multiplier[oc], p->shift[oc]) + p->out_offset;
                    *out++ = (int8_t)EQ_CLAMP(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}
