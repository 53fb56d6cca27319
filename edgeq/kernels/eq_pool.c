/* edgeq kernels: AVERAGE_POOL_2D and MAX_POOL_2D (eq_average_pool, eq_max_pool).
 *
 * reference_integer_ops::AveragePool / MaxPool: each window clipped to the image (the
 * padding takes no part), the average rounded half away from zero over the taps inside.
 * Fast path (EQ_FAST, average, windows of at most 256 taps, the whole int8 clamp): four
 * channels a word, their sums in the halves of two words (SXTAB16 of the even and of the odd
 * bytes), which int16 holds (256 * -128 at the least); the other channels one by one.
 */
#include "eq_internal.h"

/* TFLM's rounded average of `count` taps: (acc + count / 2) / count for acc > 0, else (acc -
 * count / 2) / count (the same for acc = 0 either way, as count / 2 < count) */
EQ_INLINE int32_t eq_pool_average(int32_t acc, int32_t count)
{
    const int32_t half = count / 2, sign = acc >> 31;
    return (acc + ((half ^ sign) - sign)) / count;
}

#if EQ_FAST
/* Channels [0, channels & ~3) of one window of `rows` x `cols` taps from `in` (its top-left
 * tap) into `out`, four at a time; a window as wide as the image is one run of taps. */
static void eq_average_quads(const eq_pool_t *p, const int8_t *in, int8_t *out, int32_t rows,
                             int32_t cols, int32_t count)
{
    const int32_t depth = p->channels, c4 = depth & ~3;
    const int32_t runs = cols == p->in_w ? 1 : rows, taps = cols == p->in_w ? count : cols;
    const int32_t run_step = p->in_w * depth;
    int32_t c, r, t;
    for (c = 0; c < c4; c += 4) {
        uint32_t even = 0, odd = 0; /* channels c, c + 2 and c + 1, c + 3 */
        const int8_t *run = in + c;
        int32_t v0, v1, v2, v3;
        for (r = 0; r < runs; ++r, run += run_step) {
            const int8_t *tap = run;
            for (t = 0; t < taps; ++t, tap += depth) {
                const uint32_t v = eq_load32(tap);
                even = EQ_SXTAB16(even, v);
                odd = EQ_SXTAB16_ROR8(odd, v);
            }
        }
        v0 = eq_pool_average(eq_lo16(even), count);
        v1 = eq_pool_average(eq_lo16(odd), count);
        v2 = eq_pool_average(eq_hi16(even), count);
        v3 = eq_pool_average(eq_hi16(odd), count);
        out[c] = (int8_t)v0; /* an average of int8 values is one: the whole clamp is a no-op */
        out[c + 1] = (int8_t)v1;
        out[c + 2] = (int8_t)v2;
        out[c + 3] = (int8_t)v3;
    }
}
#endif

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
                const int32_t count = EQ_MAX(0, fy1 - fy0) * EQ_MAX(0, fx1 - fx0);
                int8_t *o = out + ((b * p->out_h + oy) * p->out_w + ox) * p->channels;
                c = 0;
#if EQ_FAST
                if (average && count > 0 && count <= 256 && p->act_min <= -128
                    && p->act_max >= 127) {
                    eq_average_quads(p, in + ((b * p->in_h + in_y0 + fy0) * p->in_w + in_x0
                                              + fx0) * p->channels,
                                     o, fy1 - fy0, fx1 - fx0, count);
                    c = p->channels & ~3;
                }
#endif
                for (; c < p->channels; ++c) {
                    int32_t acc = average ? 0 : -128;
                    for (fy = fy0; fy < fy1; ++fy) {
                        for (fx = fx0; fx < fx1; ++fx) {
                            const int32_t v = in[((b * p->in_h + in_y0 + fy) * p->in_w
                                                  + in_x0 + fx) * p->channels + c];
                            acc = average ? acc + v : EQ_MAX(acc, v);
                        }
                    }
                    if (average && count > 0) {
                        acc = eq_pool_average(acc, count);
                    }
                    o[c] = (int8_t)EQ_CLAMP(acc, p->act_min, p->act_max);
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
