/* edgeq kernels: DEPTHWISE_CONV_2D (eq_depthwise_conv2d).
 *
 * Reference: reference_integer_ops::DepthwiseConvPerChannel, one output channel at one pixel
 * at a time, any depth multiplier, stride, dilation and padding.
 * Fast paths (EQ_FAST, 3x3 or 1x3, depth multiplier 1, no dilation, a scratch), channel quad
 * by channel quad:
 * - strips (eq_depthwise_strips.h, eq_depthwise_asm.h) for 1x3 filters and outputs at least
 *   EQ_DW_WIDE pixels wide: the quad's input rows become int16 rows of one channel with the
 *   input offset added (the padding 0), so that one word load gives a channel's values at two
 *   neighbouring columns; each channel's output row is one strip with its weights, bias and
 *   output stage in registers: per output pixel and filter row one load, one SMLAD (taps 0 and
 *   1) and one SMLAxy (tap 2 of the pixel before, from the same word), then the exact SMMLAR
 *   output stage; a 1x3 filter is the middle row of a 3x3 one;
 * - narrower 3x3 outputs: four channels at once pixel by pixel from padded rows of words
 *   (below), whose set-up all quads of a row share.
 */
#include "eq_internal.h"
#include "eq_depthwise_strips.h"

static int32_t eq_depthwise_one(const eq_depthwise_t *p, const int8_t *in, int32_t b,
                                int32_t oy, int32_t ox, int32_t c);

#if EQ_FAST
/* ---- DEPTHWISE_CONV_2D 3x3, narrow outputs: channel quads pixel by pixel --------------------
 * For output rows narrower than EQ_DW_WIDE pixels (eq_dw_wide). Four channels at a time over
 * the whole image, from a ring of three input rows copied into the scratch with the padding
 * filled in (the input zero point), so that every pixel takes the same
 * nine taps: per filter row, taps 0 and 1 by SMLAD on PKH-paired values, tap 2 by
 * SMLABB/SMLATT. The accumulators start from bias + input offset * (sum of the nine weights).
 * Channels left over, or whose output stage has no fast formula, go one at a time through the
 * reference code. */

/* The weights of channels c..c+3 as pairs of 16-bit values, six words per filter row: the
 * first two taps of each channel side by side (c0: (t0 t1), c1, c2, c3), for SMLAD on the two
 * taps; then the third tap as (c0 c2) (c1 c3), for SMLABB/SMLATT. sum[i]: channel c+i's nine
 * weights added up. */
static void eq_dw_quad_weights(const eq_depthwise_t *p, int32_t c, uint32_t wq[18],
                               int32_t sum[4])
{
    const int32_t depth = p->in_c;
    uint32_t e02[9], e13[9];
    int32_t t, fy;
    for (t = 0; t < 9; ++t) {
        const int32_t i = t * depth + c;
        if (p->weight_bits != 8) {
            const int32_t bits = p->weight_bits;
            e02[t] = eq_pair16(eq_weight(p->weights, i, bits),
                               eq_weight(p->weights, i + 2, bits));
            e13[t] = eq_pair16(eq_weight(p->weights, i + 1, bits),
                               eq_weight(p->weights, i + 3, bits));
        } else {
            const uint32_t w = eq_load32(p->weights + i);
            e02[t] = EQ_SXTB16(w);
            e13[t] = EQ_SXTB16_ROR8(w);
        }
        sum[0] += (int16_t)(e02[t] & 0xFFFFu);
        sum[2] += (int16_t)(e02[t] >> 16);
        sum[1] += (int16_t)(e13[t] & 0xFFFFu);
        sum[3] += (int16_t)(e13[t] >> 16);
    }
    for (fy = 0; fy < 3; ++fy) {
        const uint32_t a02 = e02[3 * fy], b02 = e02[3 * fy + 1];
        const uint32_t a13 = e13[3 * fy], b13 = e13[3 * fy + 1];
        uint32_t *row = wq + 6 * fy;
        row[0] = (a02 & 0xFFFFu) | (b02 << 16);
        row[1] = (a13 & 0xFFFFu) | (b13 << 16);
        row[2] = (a02 >> 16) | (b02 & 0xFFFF0000u);
        row[3] = (a13 >> 16) | (b13 & 0xFFFF0000u);
        row[4] = e02[3 * fy + 2];
        row[5] = e13[3 * fy + 2];
    }
}

#if EQ_ASM
/* Taps 0 and 1 of a filter row (two adjacent words: xa, xb) as (a b) pairs per channel with
 * PKHBT/PKHTB and SXTB16, one SMLAD per channel; tap 2 with SMLABB/SMLATT. */
#define EQ_DW_ROW(ROW, W)                                                 \
    "ldrd    %[xa], %[xb], [%[" ROW "]]\n\t"                              \
    "pkhbt   %[t], %[xa], %[xb], lsl #16\n\t"                             \
    "pkhtb   %[xb], %[xb], %[xa], asr #16\n\t"                            \
    "ldrd    %[w0], %[w1], [%[wq], #" #W "]\n\t"                          \
    "sxtb16  %[xa], %[t]\n\t"                                             \
    "sxtb16  %[t], %[t], ror #8\n\t"                                      \
    "smlad   %[a0], %[xa], %[w0], %[a0]\n\t"                              \
    "smlad   %[a1], %[t], %[w1], %[a1]\n\t"                               \
    "ldrd    %[w0], %[w1], [%[wq], #" #W "+8]\n\t"                        \
    "sxtb16  %[xa], %[xb]\n\t"                                            \
    "sxtb16  %[xb], %[xb], ror #8\n\t"                                    \
    "smlad   %[a2], %[xa], %[w0], %[a2]\n\t"                              \
    "smlad   %[a3], %[xb], %[w1], %[a3]\n\t"                              \
    "ldr     %[xa], [%[" ROW "], #8]\n\t"                                 \
    "ldrd    %[w0], %[w1], [%[wq], #" #W "+16]\n\t"                       \
    "sxtb16  %[xb], %[xa], ror #8\n\t"                                    \
    "sxtb16  %[xa], %[xa]\n\t"                                            \
    "smlabb  %[a0], %[xa], %[w0], %[a0]\n\t"                              \
    "smlatt  %[a2], %[xa], %[w0], %[a2]\n\t"                              \
    "smlabb  %[a1], %[xb], %[w1], %[a1]\n\t"                              \
    "smlatt  %[a3], %[xb], %[w1], %[a3]\n\t"
/* One pixel's nine taps from three rows of four-channel words (no offset: it is in the
 * accumulators' start). */
#define EQ_DW_PIXEL(R0, R1, R2, WQ, A0, A1, A2, A3)                                        \
    do {                                                                                   \
        uint32_t xa_, xb_, t_, w0_, w1_;                                                   \
        __asm volatile(                                                                    \
            EQ_DW_ROW("r0", 0) EQ_DW_ROW("r1", 24) EQ_DW_ROW("r2", 48)                     \
            : [a0] "+r"(A0), [a1] "+r"(A1), [a2] "+r"(A2), [a3] "+r"(A3),                  \
              [xa] "=&r"(xa_), [xb] "=&r"(xb_), [t] "=&r"(t_), [w0] "=&r"(w0_),            \
              [w1] "=&r"(w1_)                                                              \
            : [r0] "r"(R0), [r1] "r"(R1), [r2] "r"(R2), [wq] "r"(WQ)                       \
            : "memory");                                                                   \
    } while (0)
#else
static void eq_dw_pixel(const uint32_t *r0, const uint32_t *r1, const uint32_t *r2,
                        const uint32_t *wq, int32_t *a0, int32_t *a1, int32_t *a2, int32_t *a3)
{
    const uint32_t *rows[3];
    int32_t fy, fx;
    rows[0] = r0;
    rows[1] = r1;
    rows[2] = r2;
    for (fy = 0; fy < 3; ++fy) {
        const uint32_t *w = wq + 6 * fy;
        for (fx = 0; fx < 3; ++fx) {
            const uint32_t x = rows[fy][fx];
            const uint32_t x02 = EQ_SXTB16(x), x13 = EQ_SXTB16_ROR8(x);
            const int32_t hi = fx == 1 ? 16 : 0;
            if (fx < 2) {
                *a0 += eq_lo16(x02) * (int16_t)(w[0] >> hi);
                *a1 += eq_lo16(x13) * (int16_t)(w[1] >> hi);
                *a2 += eq_hi16(x02) * (int16_t)(w[2] >> hi);
                *a3 += eq_hi16(x13) * (int16_t)(w[3] >> hi);
            } else {
                *a0 = EQ_SMLABB(x02, w[4], *a0);
                *a2 = EQ_SMLATT(x02, w[4], *a2);
                *a1 = EQ_SMLABB(x13, w[5], *a1);
                *a3 = EQ_SMLATT(x13, w[5], *a3);
            }
        }
    }
}
#define EQ_DW_PIXEL(r0, r1, r2, wq, a0, a1, a2, a3) eq_dw_pixel(r0, r1, r2, wq, &a0, &a1, &a2, &a3)
#endif

/* The weights and output stage of one channel quad, prepared once per call in the scratch. */
typedef struct {
    uint32_t wq[18];
    int32_t u[12];   /* m2, add, r of the four channels (all EQ_RQ_RIGHT) */
    eq_rqu_t any[4]; /* the same for quads with EQ_RQ_LEFT channels */
    int32_t inner[4]; /* accumulator start: bias + input offset * sum of the nine weights */
    int32_t hot;     /* whole int8 clamp and all four channels shift right: 1, u holds 2^(r-1)
                      * and the offset is added after the shift; 2 (all EQ_RQ_FOLDED), u holds
                      * the folded rounding terms; 0 any fast stage; -1 none (the quad's
                      * channels go through the reference code) */
} eq_dw_quad_t;
typedef char eq_dw_quad_is_236_bytes[sizeof(eq_dw_quad_t) == 236 ? 1 : -1]; /* cgen */

static void eq_dw_outputs(const eq_depthwise_t *p, const eq_dw_quad_t *d, const int32_t a[4],
                          int8_t *dst)
{
    int32_t i;
    for (i = 0; i < 4; ++i) {
        dst[i] = (int8_t)EQ_CLAMP(eq_rqu_apply(&d->any[i], a[i]), p->act_min, p->act_max);
    }
}

/* Input row iy of every channel quad into `slot`: quad q's row is `width` words at
 * slot + q * width, word j input column j - pad_w, or the input zero point four times where that
 * lies in the padding. With the offset in the accumulators' start, padding taps then add
 * w * (zero point + offset) = 0, as TFLM's skipped taps do. */
static void eq_dw_rows(const eq_depthwise_t *p, const int8_t *image, int32_t iy, uint32_t *slot,
                       int32_t width, int32_t quads, uint32_t zp4)
{
    const int32_t depth = p->in_c, pad_w = EQ_MIN(p->pad_w, width);
    const int32_t inside = EQ_MIN(width, p->in_w + p->pad_w);
    int32_t q, j;
    if (iy < 0 || iy >= p->in_h) {
        for (j = 0; j < quads * width; ++j) {
            slot[j] = zp4;
        }
        return;
    }
    image += iy * p->in_w * depth; /* column 0 */
    for (q = 0; q < quads; ++q, slot += width) {
        const int8_t *src = image + 4 * q;
        for (j = 0; j < pad_w; ++j) {
            slot[j] = zp4;
        }
        for (; j < inside; ++j, src += depth) {
            slot[j] = eq_load32(src);
        }
        for (; j < width; ++j) {
            slot[j] = zp4;
        }
    }
}

#if EQ_ASM
/* The output stage of accumulator A for channel I of the quad (u at byte U of the
 * eq_dw_quad_t): m2 in w0, the rounding term in xb, r in xa, the value in t; the output pointer
 * in w1. OFF adds the offset (EQ_RQ_RIGHT). */
#define EQ_DWQ_OUT(A, U, OFF, I)                                          \
    "ldrd    %[w0], %[xb], [%[wq], #" #U "]\n\t"                          \
    "ldr     %[xa], [%[wq], #" #U "+8]\n\t"                               \
    "add     %[t], %[" A "], %[xb]\n\t"                                   \
    "add     %[t], %[t], %[" A "], asr #31\n\t"                           \
    "smmlar  %[t], %[" A "], %[w0], %[t]\n\t"                             \
    "asr     %[t], %[t], %[xa]\n\t"                                       \
    OFF                                                                   \
    "ssat    %[t], #8, %[t]\n\t"                                          \
    "strb    %[t], [%[w1], #" #I "]\n\t"
#define EQ_DWQ_OFF "ldr     %[xa], %[offm]\n\t" "add     %[t], %[t], %[xa]\n\t"
/* A whole output row of one quad (hot 1 or 2, rows STEP bytes apart per pixel) in one piece:
 * accumulators from inner[] (byte 216), the nine taps, the output stage (u at byte 72). */
#define EQ_DWQ_LOOP(STEP, OFF)                                                              \
    __asm volatile(                                                                         \
        "1:\n\t"                                                                            \
        "ldrd    %[a0], %[a1], [%[wq], #216]\n\t"                                           \
        "ldrd    %[a2], %[a3], [%[wq], #224]\n\t"                                           \
        EQ_DW_ROW("r0", 0) EQ_DW_ROW("r1", 24) EQ_DW_ROW("r2", 48)                          \
        "ldr     %[w1], %[om]\n\t"                                                          \
        EQ_DWQ_OUT("a0", 72, OFF, 0)                                                        \
        EQ_DWQ_OUT("a1", 84, OFF, 1)                                                        \
        EQ_DWQ_OUT("a2", 96, OFF, 2)                                                        \
        EQ_DWQ_OUT("a3", 108, OFF, 3)                                                       \
        "ldr     %[xa], %[depthm]\n\t"                                                      \
        "add     %[w1], %[w1], %[xa]\n\t"                                                   \
        "str     %[w1], %[om]\n\t"                                                          \
        "add     %[r0], %[r0], #" #STEP "\n\t"                                              \
        "add     %[r1], %[r1], #" #STEP "\n\t"                                              \
        "add     %[r2], %[r2], #" #STEP "\n\t"                                              \
        "ldr     %[xa], %[endm]\n\t"                                                        \
        "cmp     %[r0], %[xa]\n\t"                                                          \
        "bne     1b\n\t"                                                                    \
        : [r0] "+r"(r0), [r1] "+r"(r1), [r2] "+r"(r2), [a0] "=&r"(a0), [a1] "=&r"(a1),      \
          [a2] "=&r"(a2), [a3] "=&r"(a3), [xa] "=&r"(xa), [xb] "=&r"(xb), [t] "=&r"(t),     \
          [w0] "=&r"(w0), [w1] "=&r"(w1), [om] "+m"(o)                                      \
        : [wq] "r"(wq), [depthm] "m"(depth), [endm] "m"(end), [offm] "m"(offset)            \
        : "cc", "memory")
typedef char eq_dw_quad_layout_ok[(sizeof(uint32_t) * 18 == 72 && sizeof(int32_t) * 30 == 120
                                   && sizeof(eq_rqu_t) == 24) ? 1 : -1];

/* One output row of a hot quad, stride 1 or 2, in assembly. */
EQ_NOINLINE void eq_dw_quad_row_asm(const eq_depthwise_t *p, const eq_dw_quad_t *d,
                                    const uint32_t *r0, const uint32_t *r1, const uint32_t *r2,
                                    int8_t *o)
{
    const int32_t depth = p->in_c, offset = p->out_offset;
    const uint32_t *const end = r0 + p->out_w * p->stride_w;
    const uint32_t *wq = d->wq;
    int32_t a0, a1, a2, a3;
    uint32_t xa, xb, t, w0, w1;
    if (p->stride_w == 1) {
        if (d->hot == 2) {
            EQ_DWQ_LOOP(4, "");
        } else {
            EQ_DWQ_LOOP(4, EQ_DWQ_OFF);
        }
    } else if (d->hot == 2) {
        EQ_DWQ_LOOP(8, "");
    } else {
        EQ_DWQ_LOOP(8, EQ_DWQ_OFF);
    }
}
#endif

/* One output row of one channel quad from its three padded rows: every pixel takes the same
 * nine-tap path. With the assembly, hot quads of strides 1 and 2 go through
 * eq_dw_quad_row_asm and the rest through the general output stage (less code). */
EQ_NOINLINE void eq_dw_quad_row(const eq_depthwise_t *p, const eq_dw_quad_t *d,
                                const uint32_t *r0, const uint32_t *r1, const uint32_t *r2,
                                int8_t *o)
{
    const int32_t depth = p->in_c, out_w = p->out_w, stride_w = p->stride_w;
    const int32_t offset = p->out_offset;
    const int32_t i0 = d->inner[0], i1 = d->inner[1], i2 = d->inner[2], i3 = d->inner[3];
    const int32_t *u = d->u;
    const uint32_t *wq = d->wq;
    int32_t ox;
    if (!EQ_ASM && d->hot == 2) {
        for (ox = 0; ox < out_w; ++ox, o += depth) {
            int32_t a0 = i0, a1 = i1, a2 = i2, a3 = i3;
            EQ_DW_PIXEL(r0, r1, r2, wq, a0, a1, a2, a3);
            eq_rq4_folded_quad(a0, a1, a2, a3, u, o);
            r0 += stride_w;
            r1 += stride_w;
            r2 += stride_w;
        }
    } else if (!EQ_ASM && d->hot == 1) {
        for (ox = 0; ox < out_w; ++ox, o += depth) {
            int32_t a0 = i0, a1 = i1, a2 = i2, a3 = i3;
            EQ_DW_PIXEL(r0, r1, r2, wq, a0, a1, a2, a3);
            eq_rq4_right_quad(a0, a1, a2, a3, u, offset, o);
            r0 += stride_w;
            r1 += stride_w;
            r2 += stride_w;
        }
    } else {
        for (ox = 0; ox < out_w; ++ox, o += depth) {
            int32_t a[4];
            a[0] = i0;
            a[1] = i1;
            a[2] = i2;
            a[3] = i3;
            EQ_DW_PIXEL(r0, r1, r2, wq, a[0], a[1], a[2], a[3]);
            eq_dw_outputs(p, d, a, o);
            r0 += stride_w;
            r1 += stride_w;
            r2 += stride_w;
        }
    }
}

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

/* Quad q's eq_dw_quad_t. */
static void eq_dw_quad_prepare(const eq_depthwise_t *p, int32_t c, eq_dw_quad_t *d)
{
    const int full = p->act_min == -128 && p->act_max == 127;
    int right = 1, folded = 1, fast = 1;
    int32_t sum[4] = {0, 0, 0, 0};
    int32_t i;
    eq_dw_quad_weights(p, c, d->wq, sum);
    for (i = 0; i < 4; ++i) {
        const eq_rqc_t rq = eq_rqc_make(p->multiplier[c + i], p->shift[c + i],
                                        p->bias ? p->bias[c + i] : 0, p->out_offset);
        const int32_t kind = EQ_RQ_KIND(rq), r = EQ_RQ_AMOUNT(rq);
        folded &= kind == EQ_RQ_FOLDED;
        right &= kind == EQ_RQ_RIGHT || kind == EQ_RQ_FOLDED;
        fast &= kind == EQ_RQ_RIGHT || kind == EQ_RQ_FOLDED || kind == EQ_RQ_LEFT;
        d->u[3 * i] = rq.m2;
        d->u[3 * i + 1] = kind == EQ_RQ_FOLDED ? (int32_t)((uint32_t)1 << (r - 1)) : rq.add;
        d->u[3 * i + 2] = r;
        d->any[i] = eq_rqu_make(rq, p->out_offset);
        d->inner[i] = rq.bias + p->in_offset * sum[i];
    }
    d->hot = !fast ? -1 : !full ? 0 : folded ? 2 : right ? 1 : 0;
    if (d->hot == 2) {
        for (i = 0; i < 4; ++i) {
            d->u[3 * i + 1] = d->any[i].add;
        }
    }
}

/* Scratch: a ring of three padded input rows of every channel quad (3 * quads * width words),
 * then one eq_dw_quad_t per quad. Output row by output row, each new input row is copied in
 * once, then every quad computes its part of the row. */
static void eq_depthwise3x3_quads(const eq_depthwise_t *p, const int8_t *in, int8_t *out,
                                  uint32_t *ring)
{
    const int32_t depth = p->in_c, quads = depth / 4, out_h = p->out_h, out_w = p->out_w;
    const int32_t width = (out_w - 1) * p->stride_w + 3, slot_words = quads * width;
    const uint32_t zp4 = 0x01010101u * (uint8_t)(-p->in_offset);
    eq_dw_quad_t *d = (eq_dw_quad_t *)(void *)(ring + 3 * slot_words);
    int32_t b, c, q, oy, k;
    for (q = 0; q < quads; ++q) {
        eq_dw_quad_prepare(p, 4 * q, &d[q]);
    }
    for (b = 0; b < p->batches; ++b) {
        const int8_t *image = in + b * p->in_h * p->in_w * depth;
        int32_t held[3] = {INT32_MIN, INT32_MIN, INT32_MIN};
        for (oy = 0; oy < out_h && quads > 0; ++oy) {
            const int32_t in_y0 = oy * p->stride_h - p->pad_h;
            const uint32_t *r[3];
            int8_t *o = out + ((b * out_h + oy) * out_w) * depth;
            for (k = 0; k < 3; ++k) {
                const int32_t iy = in_y0 + k;
                const int32_t slot = ((iy % 3) + 3) % 3;
                if (held[slot] != iy) {
                    eq_dw_rows(p, image, iy, ring + slot * slot_words, width, quads, zp4);
                    held[slot] = iy;
                }
                r[k] = ring + slot * slot_words;
            }
            for (q = 0; q < quads; ++q, o += 4) {
#if EQ_ASM
                if (d[q].hot > 0 && (p->stride_w == 1 || p->stride_w == 2)) {
                    eq_dw_quad_row_asm(p, &d[q], r[0] + q * width, r[1] + q * width,
                                       r[2] + q * width, o);
                    continue;
                }
#endif
                if (d[q].hot >= 0) {
                    eq_dw_quad_row(p, &d[q], r[0] + q * width, r[1] + q * width,
                                   r[2] + q * width, o);
                }
            }
        }
        for (q = 0; q < quads; ++q) {
            if (d[q].hot < 0) {
                for (c = 4 * q; c < 4 * q + 4; ++c) {
                    eq_dw_channel(p, in, out, b, c);
                }
            }
        }
        for (c = 4 * quads; c < depth; ++c) {
            eq_dw_channel(p, in, out, b, c);
        }
    }
}
#endif /* EQ_FAST */

#if EQ_FAST
/* Which 3x3 path: the strips for outputs at least EQ_DW_WIDE pixels wide (24 with stride 2),
 * where their per-row and per-channel set-up pays off; the pixel-by-pixel quads below that.
 * edgeq.deploy.cgen.scratch_bytes makes the same choice. */
#define EQ_DW_WIDE 12
static int eq_dw_wide(const eq_depthwise_t *p)
{
    return p->out_w >= (p->stride_w == 1 ? EQ_DW_WIDE : 2 * EQ_DW_WIDE);
}
#endif


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
        && p->dilation_h == 1 && p->dilation_w == 1) {
        if (eq_dw_wide(p)) {
            eq_depthwise3x3_fast(p, in, out, scratch, NULL);
        } else {
            eq_depthwise3x3_quads(p, in, out, (uint32_t *)(void *)scratch);
        }
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
