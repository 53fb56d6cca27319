/* edgeq kernels, private to eq_conv.c: the im2col columns of the CONV_2D fast path.
 *
 * An output pixel's receptive field is gathered into natural order (eq_gather; taps in the
 * padding become the value that cancels the input offset), then turned into an int16 column
 * with the input offset added by SXTAB16, in the run order the dot products expect
 * (eq_column). Filters whose lines are not whole words (row_words > 0, e.g. the 3x3 RGB first
 * layer) build their columns straight from whole input words (eq_column_lines,
 * eq_columns_lines; a 3x3x3 filter has its own unrolled form). Only with EQ_FAST.
 */
#ifndef EQ_CONV_COLUMNS_H
#define EQ_CONV_COLUMNS_H

#include "eq_internal.h"

#if EQ_FAST
/* ---- CONV_2D as a matrix product ------------------------------------------------------------
 *
 * EQ_COLS output pixels at a time: their receptive fields become int16 columns (input offset
 * added; 0 where the window lies in the padding, where TFLM skips the taps), then every filter
 * row is multiplied with all of them (SMLAD on pairs of 16-bit values).
 * The scratch holds EQ_COLS columns of filter_stride values each, then one eq_rqc_t per output
 * channel. Values come in runs of R (4 for int8 weights, 8 for int4): column 0's run, column
 * 1's, ... Inside a run the values are ordered so that word pairs match what SXTB16 makes of the
 * weights: int8 w0 w1 w2 w3 -> (w0 w2) (w1 w3), so x0 x2 x1 x3; int4 nibbles v0..v7 ->
 * (v0 v4) (v2 v6) (v1 v5) (v3 v7), so x0 x4 x2 x6 x1 x5 x3 x7. That is what SXTAB16 makes of
 * input words, so a column is built from the receptive field's bytes in natural order. Six
 * columns is what the register file holds: six accumulators, two column words, two weight
 * pairs and three pointers/counters in the inner loop. */
#define EQ_COLS 6
#define EQ_GATHER_MAX 1152 /* padded filter rows up to this (3x3x128) are gathered on the
                            * stack */

static void eq_copy_bytes(int8_t *d, const int8_t *s, int32_t n)
{
    int32_t k = 0;
    for (; k + 4 <= n; k += 4) {
        const uint32_t v = eq_load32(s + k);
        memcpy(d + k, &v, sizeof v);
    }
    for (; k < n; ++k) {
        d[k] = s[k];
    }
}

/* Output pixel (oy, ox)'s receptive field as filter_h * filter_w * in_c bytes in natural order
 * (tmp has filter_stride bytes; the tail beyond them is set by the caller). Taps in the padding
 * get the input zero point, which the offset turns into 0. */
static const int8_t *eq_gather(const eq_conv_t *p, const int8_t *in, int32_t b, int32_t oy,
                               int32_t ox, int8_t *tmp)
{
    const int32_t depth = p->in_c, fw = p->filter_w, row_bytes = fw * depth;
    const int32_t in_y0 = oy * p->stride_h - p->pad_h;
    const int32_t in_x0 = ox * p->stride_w - p->pad_w;
    const int8_t zp = (int8_t)(-p->in_offset);
    const int32_t row_step = p->in_w * depth * p->dilation_h;
    const int32_t last_y = in_y0 + p->dilation_h * (p->filter_h - 1);
    int8_t *d = tmp;
    int32_t fy, fx;
    if (b == 0 && p->dilation_w == 1 && in_y0 >= 0 && last_y < p->in_h && in_x0 >= 0
        && in_x0 + fw <= p->in_w) {
        /* inside the image: whole words per filter row, the last one running up to 3 bytes
         * past the row (overwritten by the next row, or in tmp's tail, times zero weights) */
        const int32_t words = (row_bytes + 3) >> 2;
        const int8_t *s = in + (in_y0 * p->in_w + in_x0) * depth;
        if ((last_y * p->in_w + in_x0) * depth + 4 * words <= p->in_h * p->in_w * depth) {
            for (fy = 0; fy < p->filter_h; ++fy, d += row_bytes, s += row_step) {
                int32_t k;
                for (k = 0; k < words; ++k) {
                    const uint32_t v = eq_load32(s + 4 * k);
                    memcpy(d + 4 * k, &v, sizeof v);
                }
            }
            return tmp;
        }
    }
    for (fy = 0; fy < p->filter_h; ++fy, d += row_bytes) {
        const int32_t iy = in_y0 + p->dilation_h * fy;
        const int8_t *row = in + (b * p->in_h + EQ_CLAMP(iy, 0, p->in_h - 1)) * p->in_w * depth;
        if (iy < 0 || iy >= p->in_h) {
            memset(d, zp, (size_t)row_bytes);
        } else if (p->dilation_w == 1 && in_x0 >= 0 && in_x0 + fw <= p->in_w) {
            eq_copy_bytes(d, row + in_x0 * depth, row_bytes);
        } else {
            for (fx = 0; fx < fw; ++fx) {
                const int32_t ix = in_x0 + p->dilation_w * fx;
                if (ix >= 0 && ix < p->in_w) {
                    eq_copy_bytes(d + fx * depth, row + ix * depth, depth);
                } else {
                    memset(d + fx * depth, zp, (size_t)depth);
                }
            }
        }
    }
    return tmp;
}

/* Column j from k_pad natural-order bytes: SXTAB16 extends, adds the offset and gives the run
 * order directly. */
static void eq_column(const int8_t *src, int16_t *cols, int32_t j, int32_t run, int32_t k_pad,
                      uint32_t off2)
{
    uint32_t *dst = (uint32_t *)(void *)cols;
    int32_t k;
    if (run == 4) {
        uint32_t *d = dst + j * 2;
        for (k = 0; k + 16 <= k_pad; k += 16, d += 8 * EQ_COLS) { /* four runs per turn */
            const uint32_t a = eq_load32(src + k), b = eq_load32(src + k + 4);
            const uint32_t c = eq_load32(src + k + 8), e = eq_load32(src + k + 12);
            d[0] = EQ_SXTAB16(off2, a);
            d[1] = EQ_SXTAB16_ROR8(off2, a);
            d[2 * EQ_COLS] = EQ_SXTAB16(off2, b);
            d[2 * EQ_COLS + 1] = EQ_SXTAB16_ROR8(off2, b);
            d[4 * EQ_COLS] = EQ_SXTAB16(off2, c);
            d[4 * EQ_COLS + 1] = EQ_SXTAB16_ROR8(off2, c);
            d[6 * EQ_COLS] = EQ_SXTAB16(off2, e);
            d[6 * EQ_COLS + 1] = EQ_SXTAB16_ROR8(off2, e);
        }
        for (; k + 8 <= k_pad; k += 8, d += 4 * EQ_COLS) { /* two runs per turn */
            const uint32_t a = eq_load32(src + k), b = eq_load32(src + k + 4);
            d[0] = EQ_SXTAB16(off2, a);
            d[1] = EQ_SXTAB16_ROR8(off2, a);
            d[2 * EQ_COLS] = EQ_SXTAB16(off2, b);
            d[2 * EQ_COLS + 1] = EQ_SXTAB16_ROR8(off2, b);
        }
        if (k < k_pad) {
            const uint32_t a = eq_load32(src + k);
            d[0] = EQ_SXTAB16(off2, a);
            d[1] = EQ_SXTAB16_ROR8(off2, a);
        }
    } else {
        uint32_t *d = dst + j * 4;
        for (k = 0; k < k_pad; k += 8, d += 4 * EQ_COLS) {
            const uint32_t a = eq_load32(src + k), c4 = eq_load32(src + k + 4);
            const uint32_t a02 = EQ_SXTAB16(off2, a), a13 = EQ_SXTAB16_ROR8(off2, a);
            const uint32_t b02 = EQ_SXTAB16(off2, c4), b13 = EQ_SXTAB16_ROR8(off2, c4);
            d[0] = (a02 & 0xFFFFu) | (b02 << 16);
            d[1] = (b02 & 0xFFFF0000u) | (a02 >> 16);
            d[2] = (a13 & 0xFFFFu) | (b13 << 16);
            d[3] = (b13 & 0xFFFF0000u) | (a13 >> 16);
        }
    }
}

/* Column j of a 3x3 filter over three channels (an RGB image: row_words 2, one byte left per
 * line, 7 runs), straight from the input lines at src + 0, step, 2 * step. */
EQ_INLINE void eq_column_rgb3x3(const int8_t *src, int32_t step, int16_t *cols, int32_t j,
                                uint32_t off2)
{
    uint32_t *d = (uint32_t *)(void *)cols + j * 2;
    const int8_t *s1 = src + step, *s2 = s1 + step;
    uint32_t v;
#define EQ_RUN_AT(AT, V)                                                                    \
    do {                                                                                    \
        const uint32_t v_ = (V);                                                            \
        d[2 * EQ_COLS * (AT)] = EQ_SXTAB16(off2, v_);                                       \
        d[2 * EQ_COLS * (AT) + 1] = EQ_SXTAB16_ROR8(off2, v_);                              \
    } while (0)
    EQ_RUN_AT(0, eq_load32(src));
    EQ_RUN_AT(1, eq_load32(src + 4));
    EQ_RUN_AT(2, eq_load32(s1));
    EQ_RUN_AT(3, eq_load32(s1 + 4));
    EQ_RUN_AT(4, eq_load32(s2));
    EQ_RUN_AT(5, eq_load32(s2 + 4));
    v = (uint32_t)(uint8_t)src[8] | (uint32_t)(uint8_t)s1[8] << 8 | (uint32_t)(uint8_t)s2[8] << 16;
    EQ_RUN_AT(6, v);
#undef EQ_RUN_AT
}

/* Filters of three lines of nine contiguous input bytes (3x3 over three channels; 3x1 over
 * nine), whose columns eq_column_rgb3x3 and eq_columns_rgb3x3 build. */
static int eq_rgb_lines(const eq_conv_t *p)
{
    return p->filter_h == 3 && p->row_words == 2 && p->filter_w * p->in_c == 9
           && p->filter_stride == 28 && (p->dilation_w == 1 || p->filter_w == 1);
}

/* Columns j to j + n - 1 (n >= 1) of pixels whose windows lie pixel_step bytes apart
 * (eq_column_rgb3x3 n times; with EQ_ASM one loop whose stores are STRD pairs). */
EQ_INLINE void eq_columns_rgb3x3(const int8_t *src, int32_t step, int32_t pixel_step,
                                 int16_t *cols, int32_t j, int32_t count, uint32_t off2)
{
#if EQ_ASM
    uint32_t *d = (uint32_t *)(void *)cols + 2 * j;
    const int8_t *s1, *s2;
    uint32_t a, b, t0, t1, n = (uint32_t)count;
#define EQ_RGB_WORDS(S, AT0, AT1)                                                           \
    "ldr     %[a], [" S "]\n\t"                                                             \
    "ldr     %[b], [" S ", #4]\n\t"                                                         \
    "sxtab16 %[t0], %[off], %[a]\n\t"                                                       \
    "sxtab16 %[t1], %[off], %[a], ror #8\n\t"                                               \
    "strd    %[t0], %[t1], [%[d], #" AT0 "]\n\t"                                            \
    "sxtab16 %[t0], %[off], %[b]\n\t"                                                       \
    "sxtab16 %[t1], %[off], %[b], ror #8\n\t"                                               \
    "strd    %[t0], %[t1], [%[d], #" AT1 "]\n\t"
    __asm volatile(
        "1:\n\t"
        EQ_RGB_WORDS("%[s]", "0", "48")
        "add     %[s1], %[s], %[step]\n\t"
        EQ_RGB_WORDS("%[s1]", "96", "144")
        "add     %[s2], %[s1], %[step]\n\t"
        EQ_RGB_WORDS("%[s2]", "192", "240")
        "ldrb    %[a], [%[s], #8]\n\t"
        "ldrb    %[b], [%[s1], #8]\n\t"
        "orr     %[a], %[a], %[b], lsl #8\n\t"
        "ldrb    %[b], [%[s2], #8]\n\t"
        "orr     %[a], %[a], %[b], lsl #16\n\t"
        "sxtab16 %[t0], %[off], %[a]\n\t"
        "sxtab16 %[t1], %[off], %[a], ror #8\n\t"
        "strd    %[t0], %[t1], [%[d], #288]\n\t"
        "add     %[s], %[s], %[ps]\n\t"
        "add     %[d], %[d], #8\n\t"
        "subs    %[n], %[n], #1\n\t"
        "bne     1b\n\t"
        : [s] "+r"(src), [d] "+r"(d), [n] "+r"(n), [s1] "=&r"(s1), [s2] "=&r"(s2),
          [a] "=&r"(a), [b] "=&r"(b), [t0] "=&r"(t0), [t1] "=&r"(t1)
        : [step] "r"(step), [ps] "r"(pixel_step), [off] "r"(off2)
        : "cc", "memory");
#undef EQ_RGB_WORDS
#else
    const int32_t end = j + count;
    for (; j < end; ++j, src += pixel_step) {
        eq_column_rgb3x3(src, step, cols, j, off2);
    }
#endif
}

/* Column j for row_words > 0 (int8 runs): each filter line's whole words straight from the
 * input (line fy at src + fy * step), then the lines' remaining bytes gathered into one more
 * run or few. */
static void eq_column_lines(const eq_conv_t *p, const int8_t *src, int32_t step, int16_t *cols,
                            int32_t j, uint32_t off2)
{
    const int32_t words = p->row_words, fh = p->filter_h;
    const int32_t rest = p->filter_w * p->in_c - 4 * words;
    const int32_t tail_runs = (p->filter_stride - 4 * words * fh) / 4;
    uint32_t *d = (uint32_t *)(void *)cols + j * 2;
    uint32_t *rd = d + 2 * EQ_COLS * words * fh; /* the runs of the leftovers */
    uint32_t word = 0;
    int32_t fy, k, bits = 0, runs = 0;
    for (fy = 0; fy < fh; ++fy, src += step) {
        for (k = 0; k < words; ++k, d += 2 * EQ_COLS) {
            const uint32_t v = eq_load32(src + 4 * k);
            d[0] = EQ_SXTAB16(off2, v);
            d[1] = EQ_SXTAB16_ROR8(off2, v);
        }
        for (k = 0; k < rest; ++k) { /* bytes collected into words, in order */
            word |= (uint32_t)(uint8_t)src[4 * words + k] << bits;
            bits += 8;
            if (bits == 32) {
                rd[0] = EQ_SXTAB16(off2, word);
                rd[1] = EQ_SXTAB16_ROR8(off2, word);
                rd += 2 * EQ_COLS;
                ++runs;
                word = 0;
                bits = 0;
            }
        }
    }
    for (; runs < tail_runs; ++runs, rd += 2 * EQ_COLS) { /* the rest times zero weights */
        rd[0] = EQ_SXTAB16(off2, word);
        rd[1] = EQ_SXTAB16_ROR8(off2, word);
        word = 0;
    }
}

/* Pixel (oy, ox)'s receptive field for eq_column_rgb3x3 (three lines of nine contiguous input
 * bytes) at the border: bytes in the padding get the input zero point. */
static const int8_t *eq_gather_rgb(const eq_conv_t *p, const int8_t *image, int32_t oy,
                                   int32_t ox, int8_t *tmp)
{
    const int32_t depth = p->in_c, row = p->in_w * depth;
    const int32_t in_y0 = oy * p->stride_h - p->pad_h, x0 = (ox * p->stride_w - p->pad_w) * depth;
    /* the line's bytes inside the image: [lo, hi) */
    const int32_t lo = x0 < 0 ? -x0 : 0, hi = row - x0 < 9 ? row - x0 : 9;
    const int8_t zp = (int8_t)(-p->in_offset);
    const uint32_t zp4 = (uint32_t)(uint8_t)zp * 0x01010101u;
    int32_t fy, k;
    for (fy = 0; fy < 3; ++fy) {
        const int32_t iy = in_y0 + p->dilation_h * fy;
        int8_t *d = tmp + 9 * fy;
        if (lo == 0 && hi == 9 && iy >= 0 && iy < p->in_h) {
            memcpy(d, image + iy * row + x0, 9);
            continue;
        }
        memcpy(d, &zp4, 4); /* whole words: a call to memset costs more */
        memcpy(d + 4, &zp4, 4);
        d[8] = zp;
        if (iy < 0 || iy >= p->in_h) {
            continue;
        }
        for (k = lo; k < hi; ++k) {
            d[k] = image[iy * row + x0 + k];
        }
    }
    return tmp;
}

/* The EQ_COLS columns of the block of n pixels from pixel `pix`, for row_words > 0; missing
 * pixels repeat the last one. tmp: the gather buffer for pixels at the border. */
static void eq_columns_lines(const eq_conv_t *p, const int8_t *image, int32_t pix, int32_t n,
                             int16_t *cols, int8_t *tmp, uint32_t off2)
{
    const int32_t out_w = p->out_w, depth = p->in_c, fh = p->filter_h;
    const int32_t step = p->in_w * depth * p->dilation_h, line = p->filter_w * depth;
    const int32_t x_last = p->in_w - p->filter_w; /* last interior window start */
    const int32_t y_last = p->in_h - 1 - p->dilation_h * (fh - 1);
    const int rgb = eq_rgb_lines(p);
    int32_t oy = pix / out_w, ox = pix - oy * out_w, j;
    for (j = 0; j < EQ_COLS; ++j) {
        const int32_t y0 = oy * p->stride_h - p->pad_h;
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        const int inside = y0 >= 0 && x0 >= 0 && y0 <= y_last && x0 <= x_last;
        if (rgb) {
            eq_columns_rgb3x3(inside ? image + (y0 * p->in_w + x0) * depth
                                     : eq_gather_rgb(p, image, oy, ox, tmp),
                              inside ? step : 9, 0, cols, j, 1, off2);
        } else if (p->dilation_w == 1 && inside) {
            eq_column_lines(p, image + (y0 * p->in_w + x0) * depth, step, cols, j, off2);
        } else {
            eq_column_lines(p, eq_gather(p, image, 0, oy, ox, tmp), line, cols, j, off2);
        }
        if (j + 1 < n && ++ox == out_w) {
            ox = 0;
            ++oy;
        }
    }
}

#endif /* EQ_FAST */

#endif /* EQ_CONV_COLUMNS_H */
