/* edgeq kernels: AVERAGE_POOL_2D and MAX_POOL_2D (eq_average_pool, eq_max_pool).
 *
 * reference_integer_ops::AveragePool / MaxPool: each window clipped to the image (the
 * padding takes no part), the average rounded half away from zero over the taps inside.
 * No fast path.
 */
#include "eq_internal.h"

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
