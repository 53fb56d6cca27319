/* edgeq kernels, private to eq_depthwise.c: the 3x3 depthwise convolution two outputs at a
 * time (eq_depthwise3x3_pairs), its int16 planes, its weight pairs and its assembly
 * (eq_dw_run_s1/s2 and the _m and _n variants for shorter rows). Included after
 * eq_dw_channel (the reference code for channels without a fast stage). Only with EQ_FAST;
 * the assembly with EQ_ASM.
 */
#ifndef EQ_DEPTHWISE_PAIRS_H
#define EQ_DEPTHWISE_PAIRS_H

#include "eq_internal.h"
#include "eq_depthwise_asm.h"

/* ---- DEPTHWISE_CONV_2D 3x3, strides 1 and 2 across: output pairs from int16 planes ----------
 * Channel quad by channel quad and band of output rows by band: the band's padded input rows
 * of the four channels become int16 planes with the input offset added (0 in the padding),
 * plane row r of channel k at (4r + k) * rs bytes, so that every word holds a channel's values
 * at two neighbouring columns, word aligned at even columns; the rows a band shares with the
 * band before are copied, not converted again (an image in one band: quad by quad in
 * eq_dw_one_band). Then channel by channel (the quad's in one call of the assembly, which
 * prepares each channel's stage and leaves to C those it cannot take), with the nine
 * weights as (w0 w1) (w1 w2) pairs per filter row, doubled, two neighbouring outputs at a time
 * from two or three aligned words per filter row:
 *   stride 1, outputs x, x + 1 (x even), words a = (v[x] v[x+1]), b = (v[x+2] v[x+3]):
 *     x: SMLAD(a, (w0 w1)) + SMLABT(b, (w1 w2));  x + 1: SMLATB(a, (w0 w1)) + SMLAD(b, (w1 w2))
 *   stride 2, a = (v[2x] v[2x+1]), b, c the next words:
 *     x: SMLAD(a, (w0 w1)) + SMLABT(b, (w1 w2));  x + 1: SMLAD(b, (w0 w1)) + SMLABT(c, (w1 w2))
 * six multiply instructions for nine MACs. Channels with the folded output stage, the whole
 * int8 range and a bias below 2^29 (mode 2) take the doubled weights and bias: with the
 * accumulator doubled, SMMLAR(2 acc, M, c) = c + ((acc * M + 2^30) >> 31) is the rounding
 * doubling high multiply itself (for M in [2^30, 2^31)), so the stage is
 *   v = SSAT8(SMMLAR(2 acc, M, add + (acc >> 31)) >> r)
 * with add = 2^(r-1) + offset * 2^r (eq_rqc_make's EQ_RQ_FOLDED proof; |2 acc| < 2^31). Other
 * fast stages use eq_rqu_apply (the weights halved again); channels without one go through
 * the reference code. */
#define EQ_DW_BAND_BYTES 3584 /* scratch for a band of planes; edgeq.deploy.cgen mirrors it */
#define EQ_DW_PR 124 /* bytes per plane row when the row fits: 2 * 496 fits LDRD's offset */
#define EQ_DW_PRM 64 /* the same for rows of at most 32 values (longer bands) */
#define EQ_DW_PRN 32 /* the same for rows of at most 16 values (less scratch) */

typedef struct {
    int32_t count; /* values per plane row: the pairs read up to the last pair's third word */
    int32_t rs;    /* bytes per plane row: EQ_DW_PRN, EQ_DW_PRM, EQ_DW_PR, or 2 * count */
    int32_t band;  /* output rows per band */
    int32_t rows;  /* plane rows per band */
} eq_dw_band_t;

static eq_dw_band_t eq_dw_band(const eq_depthwise_t *p)
{
    const int32_t even = (p->out_w + 1) & ~1;
    eq_dw_band_t g;
    g.count = ((even - 1) * p->stride_w + 5) & ~1;
    g.rs = 2 * g.count <= EQ_DW_PRN   ? EQ_DW_PRN
           : 2 * g.count <= EQ_DW_PRM ? EQ_DW_PRM
           : 2 * g.count <= EQ_DW_PR  ? EQ_DW_PR
                                      : 2 * g.count;
    g.band = (EQ_DW_BAND_BYTES / (4 * g.rs) - 3) / p->stride_h + 1;
    g.band = EQ_MAX(1, EQ_MIN(p->out_h, g.band));
    g.rows = (g.band - 1) * p->stride_h + 3;
    return g;
}

EQ_HELPER void eq_store32(void *p, uint32_t v)
{
    memcpy(p, &v, sizeof v); /* one STR: Cortex-M7 allows unaligned words */
}

/* The odd last column x of a four-channel row (channels `plane` values apart) from input
 * word v. */
EQ_INLINE void eq_dw_fill_last(int16_t *row, int32_t plane, uint32_t v, uint32_t off2)
{
    const uint32_t a02 = EQ_SXTAB16(off2, v), a13 = EQ_SXTAB16_ROR8(off2, v);
    row[0] = (int16_t)eq_lo16(a02);
    row[plane] = (int16_t)eq_lo16(a13);
    row[2 * plane] = (int16_t)eq_hi16(a02);
    row[3 * plane] = (int16_t)eq_hi16(a13);
}

#if EQ_ASM
EQ_DW_FILL_ASM(eq_dw_fill_pr, EQ_DW_PR, 2 * EQ_DW_PR, 3 * EQ_DW_PR)
EQ_DW_FILL_ASM(eq_dw_fill_prm, EQ_DW_PRM, 2 * EQ_DW_PRM, 3 * EQ_DW_PRM)
EQ_DW_FILL_ASM(eq_dw_fill_prn, EQ_DW_PRN, 2 * EQ_DW_PRN, 3 * EQ_DW_PRN)
/* n >= 1 image rows of four channels whose every column (an even number, line bytes a row)
 * is filled: the rows' column pairs in one loop, the plane pointer moved by `skip` bytes
 * from row to row (the interior of eq_dw_fill_asm). */
#define EQ_DW_FILL_ALL_ASM(NAME, C1, C2, C3)                                                \
    EQ_INLINE void NAME(uint32_t *r0, const int8_t *src, int32_t n, int32_t line,           \
                        int32_t depth, int32_t skip, uint32_t off2)                         \
    {                                                                                       \
        uint32_t va, vb, a02, a13, t;                                                       \
        const int8_t *end = src + line;                                                     \
        __asm volatile(                                                                     \
            "1:\n\t"                                                                        \
            "ldr     %[va], [%[src]]\n\t"                                                   \
            "ldr     %[vb], [%[src], %[depth]]\n\t"                                         \
            "add     %[src], %[src], %[depth], lsl #1\n\t"                                  \
            "sxtab16 %[a02], %[off2], %[va]\n\t"                                            \
            "sxtab16 %[a13], %[off2], %[va], ror #8\n\t"                                    \
            "sxtab16 %[va], %[off2], %[vb]\n\t"                                             \
            "sxtab16 %[vb], %[off2], %[vb], ror #8\n\t"                                     \
            "pkhbt   %[t], %[a02], %[va], lsl #16\n\t"                                      \
            "pkhtb   %[va], %[va], %[a02], asr #16\n\t"                                     \
            "str     %[va], [%[r0], #" EQ_DWS_X(C2) "]\n\t"                                 \
            "pkhbt   %[va], %[a13], %[vb], lsl #16\n\t"                                     \
            "str     %[va], [%[r0], #" EQ_DWS_X(C1) "]\n\t"                                 \
            "pkhtb   %[vb], %[vb], %[a13], asr #16\n\t"                                     \
            "str     %[vb], [%[r0], #" EQ_DWS_X(C3) "]\n\t"                                 \
            "str     %[t], [%[r0]], #4\n\t"                                                 \
            "cmp     %[src], %[end]\n\t"                                                    \
            "bne     1b\n\t"                                                                \
            "add     %[r0], %[r0], %[skip]\n\t"                                             \
            "add     %[end], %[end], %[line]\n\t"                                           \
            "subs    %[n], %[n], #1\n\t"                                                    \
            "bne     1b\n\t"                                                                \
            : [va] "=&r"(va), [vb] "=&r"(vb), [a02] "=&r"(a02), [a13] "=&r"(a13),           \
              [t] "=&r"(t), [src] "+r"(src), [r0] "+r"(r0), [end] "+r"(end), [n] "+r"(n)    \
            : [depth] "r"(depth), [off2] "r"(off2), [skip] "r"(skip), [line] "r"(line)      \
            : "cc", "memory");                                                              \
    }
EQ_DW_FILL_ALL_ASM(eq_dw_fill_all_pr, EQ_DW_PR, 2 * EQ_DW_PR, 3 * EQ_DW_PR)
EQ_DW_FILL_ALL_ASM(eq_dw_fill_all_prm, EQ_DW_PRM, 2 * EQ_DW_PRM, 3 * EQ_DW_PRM)
EQ_DW_FILL_ALL_ASM(eq_dw_fill_all_prn, EQ_DW_PRN, 2 * EQ_DW_PRN, 3 * EQ_DW_PRN)
/* n image rows of four channels (input rows `line` bytes apart, plane rows 4 * RS bytes),
 * cols >= 2 columns each: one loop with the fill inlined, no per-row tests but the odd
 * column's; rows filled whole (cols even, line = cols * depth) in one loop (ALL). */
#define EQ_DW_FILL_ROWS(NAME, FILL, ALL, RS)                                                \
    static void NAME(int16_t *row, const int8_t *src, int32_t n, int32_t line, int32_t depth, \
                     int32_t cols, uint32_t off2)                                           \
    {                                                                                       \
        const int32_t pairs = cols >> 1, last = (cols - 1) * depth;                        \
        if (!(cols & 1) && cols * depth == line && n > 0) {                                 \
            ALL((uint32_t *)(void *)row, src, n, line, depth, 4 * (RS) - 2 * cols, off2);   \
            return;                                                                         \
        }                                                                                   \
        for (; n > 0; --n, row += 2 * (RS), src += line) {                                  \
            FILL((uint32_t *)(void *)row, src, depth, pairs, off2);                         \
            if (cols & 1) {                                                                 \
                eq_dw_fill_last(row + cols - 1, (RS) / 2, eq_load32(src + last), off2);      \
            }                                                                               \
        }                                                                                   \
    }
EQ_DW_FILL_ROWS(eq_dw_rows_pr, eq_dw_fill_pr, eq_dw_fill_all_pr, EQ_DW_PR)
EQ_DW_FILL_ROWS(eq_dw_rows_prm, eq_dw_fill_prm, eq_dw_fill_all_prm, EQ_DW_PRM)
EQ_DW_FILL_ROWS(eq_dw_rows_prn, eq_dw_fill_prn, eq_dw_fill_all_prn, EQ_DW_PRN)
#endif

/* Input rows iy0 .. iy0 + rows - 1 of channels c0 .. c0 + nch - 1 into plane rows 0 .. rows - 1
 * (plane row r of channel k at (4r + k) * rs bytes): value j is input column j - pad_w plus
 * the input offset. A row outside the image is zeroed whole (once per call with one band);
 * the padding columns of the others are zeroed once per call (eq_dw_plane_clear). Four
 * channels come from one input word: SXTAB16 adds the offset to channels (0, 2) and (1, 3),
 * and two neighbouring columns are paired into each channel's row with PKHBT/PKHTB. */
EQ_NO_MEMSET EQ_INLINE void eq_dw_plane_rows(const eq_depthwise_t *p, const int8_t *image,
                                          int32_t iy0, int32_t rows, int32_t c0, int32_t nch,
                                          int16_t *planes, const eq_dw_band_t *g)
{
    const int32_t depth = p->in_c, count = g->count, plane = g->rs / 2;
    const int32_t pad = EQ_MIN(p->pad_w, count), line = p->in_w * depth;
    const int32_t cols = EQ_MAX(0, EQ_MIN(p->in_w, count - p->pad_w));
    const int32_t lo = EQ_MIN(rows, EQ_MAX(0, -iy0));
    const int32_t hi = EQ_MAX(lo, EQ_MIN(rows, p->in_h - iy0)); /* the image's plane rows */
    const uint32_t off2 = eq_pair16(p->in_offset, p->in_offset);
    int32_t r, k, x;
    if (g->band != p->out_h) { /* else zeroed once (eq_dw_plane_clear) */
        for (r = 0; r < rows; r = r + 1 == lo ? hi : r + 1) { /* rows < lo, >= hi */
            if (r >= lo && r < hi) {
                continue;
            }
            for (k = 0; k < nch; ++k) {
                uint32_t *z = (uint32_t *)(void *)(planes + (4 * r + k) * plane);
                for (x = 0; x < count / 2; ++x) {
                    z[x] = 0;
                }
            }
        }
    }
    image += (iy0 + lo) * line + c0;
#if EQ_ASM
    if (nch == 4 && cols >= 2
        && (g->rs == EQ_DW_PR || g->rs == EQ_DW_PRM || g->rs == EQ_DW_PRN)) {
        (g->rs == EQ_DW_PR    ? eq_dw_rows_pr
         : g->rs == EQ_DW_PRM ? eq_dw_rows_prm
                              : eq_dw_rows_prn)(planes + lo * 4 * plane + pad, image, hi - lo,
                                                line, depth, cols, off2);
        return;
    }
#endif
    for (r = lo; r < hi; ++r, image += line) {
        int16_t *row = planes + r * 4 * plane + pad;
        const int8_t *src = image;
        if (nch < 4) {
            for (k = 0; k < nch; ++k) {
                for (x = 0; x < cols; ++x) {
                    row[k * plane + x] = (int16_t)(src[x * depth + k] + p->in_offset);
                }
            }
            continue;
        }
        for (x = 0; x + 1 < cols; x += 2, src += 2 * depth) {
            const uint32_t va = eq_load32(src), vb = eq_load32(src + depth);
            const uint32_t a02 = EQ_SXTAB16(off2, va), a13 = EQ_SXTAB16_ROR8(off2, va);
            const uint32_t b02 = EQ_SXTAB16(off2, vb), b13 = EQ_SXTAB16_ROR8(off2, vb);
            eq_store32(row + x, (a02 & 0xFFFFu) | (b02 << 16));
            eq_store32(row + 2 * plane + x, (a02 >> 16) | (b02 & 0xFFFF0000u));
            eq_store32(row + plane + x, (a13 & 0xFFFFu) | (b13 << 16));
            eq_store32(row + 3 * plane + x, (a13 >> 16) | (b13 & 0xFFFF0000u));
        }
        if (x < cols) { /* an odd last column */
            eq_dw_fill_last(row + x, plane, eq_load32(src), off2);
        }
    }
}

/* The padding columns (before the image's first column and after its last, up to count) of
 * every plane row of the band to 0: the fills of rows inside the image never write them. With
 * one band, the rows outside the image are the same for every quad: zeroed here whole. */
EQ_NO_MEMSET static void eq_dw_plane_clear(const eq_depthwise_t *p, int16_t *planes,
                                           const eq_dw_band_t *g)
{
    const int32_t pad = EQ_MIN(p->pad_w, g->count), plane = g->rs / 2;
    const int32_t tail = pad + EQ_MAX(0, EQ_MIN(p->in_w, g->count - p->pad_w));
    const int once = g->band == p->out_h;
    int32_t j, x;
    for (j = 0; j < 4 * g->rows; ++j) {
        const int32_t iy = (j >> 2) - p->pad_h;
        const int outside = once && (iy < 0 || iy >= p->in_h);
        int16_t *row = planes + j * plane;
        for (x = 0; x < (outside ? g->count : pad); ++x) {
            row[x] = 0;
        }
        for (x = tail; x < g->count; ++x) {
            row[x] = 0;
        }
    }
}

/* One channel's output stage for the C rows (the assembly prepares its own). */
typedef struct {
    uint32_t w[6];     /* per filter row (w0 w1), (w1 w2); doubled in mode 2 */
    int32_t bias;      /* doubled in mode 2 */
    int32_t m, add, r; /* mode 2: M, the folded rounding term, the right shift */
    int32_t mode;      /* 2 the doubled short stage, 1 any fast stage (u), 0 none */
    eq_rqu_t u;
} eq_dw_pair_t;

/* A word of two even int16 values halved (each half on its own). */
EQ_INLINE uint32_t eq_dw_half(uint32_t w)
{
    return eq_pair16(eq_lo16(w) / 2, eq_hi16(w) / 2);
}

/* Channel c's output stage, its bias and its weight pairs from w (doubled: halved but in
 * mode 2). */
static void eq_dw_pair_prepare(const eq_depthwise_t *p, int32_t c, const uint32_t *w,
                               eq_dw_pair_t *d)
{
    const int32_t bias = p->bias ? p->bias[c] : 0, m = p->multiplier[c], shift = p->shift[c];
    int32_t i, twice = 1;
    /* mode 2: EQ_RQ_FOLDED's conditions (eq_rqc_make) with the bias below 2^29 */
    if (m >= (1 << 30) && shift <= -1 && shift >= -22 && bias < (1 << 29)
        && bias > -(1 << 29) && p->act_min == -128 && p->act_max == 127) {
        d->mode = 2;
        d->m = m;
        d->r = -shift;
        d->add = (int32_t)(((uint32_t)2 * (uint32_t)p->out_offset + 1u) << (-shift - 1));
        twice = 2;
    } else {
        const eq_rqc_t rq = eq_rqc_make(m, shift, bias, p->out_offset);
        const int32_t kind = EQ_RQ_KIND(rq);
        d->mode = kind == EQ_RQ_FOLDED || kind == EQ_RQ_RIGHT || kind == EQ_RQ_LEFT;
        d->u = eq_rqu_make(rq, p->out_offset);
    }
    d->bias = twice * bias;
    for (i = 0; i < 6; ++i) {
        d->w[i] = twice == 2 ? w[i] : eq_dw_half(w[i]);
    }
}

/* Channel c's weight pairs (six words, doubled), any weight width. */
static void eq_dw_pair_weights(const eq_depthwise_t *p, int32_t c, uint32_t *w)
{
    const int32_t bits = p->weight_bits, depth = p->in_c;
    int32_t fy;
    for (fy = 0; fy < 3; ++fy) {
        const int32_t i = 3 * fy * depth + c;
        const int32_t w0 = eq_weight(p->weights, i, bits);
        const int32_t w1 = eq_weight(p->weights, i + depth, bits);
        const int32_t w2 = eq_weight(p->weights, i + 2 * depth, bits);
        w[2 * fy] = eq_pair16(2 * w0, 2 * w1);
        w[2 * fy + 1] = eq_pair16(2 * w1, 2 * w2);
    }
}

/* Weights i .. i + 3 (int4, i even: two bytes) as four int8 bytes: each nibble in its byte,
 * its sign bit copied into the byte's top four bits. */
EQ_INLINE uint32_t eq_dw_int4_quad(const int8_t *w, int32_t i)
{
    const uint32_t v = (uint32_t)(uint8_t)w[i >> 1] | (uint32_t)(uint8_t)w[(i >> 1) + 1] << 8;
    const uint32_t b = (v & 0xFu) | (v & 0xF0u) << 4 | (v & 0xF00u) << 8 | (v & 0xF000u) << 12;
    return b | (b & 0x08080808u) * 0x1Eu;
}

/* Whether eq_dw_quad_weights takes the op's weights: int8, or int4 with every quad's first
 * weight at an even index. */
EQ_INLINE int eq_dw_quad_bits(const eq_depthwise_t *p)
{
    return p->weight_bits == 8 || (p->weight_bits == 4 && p->in_c % 2 == 0);
}

/* Filter row fy's weight pairs of four channels (w: channel 0's six words) from its taps t0,
 * t1, t2 (four int8 weights each): SXTB16 gives a tap of channels (0, 2) and (1, 3), SADD16
 * doubles, PKHBT/PKHTB pair neighbouring taps. */
EQ_INLINE void eq_dw_quad_row(uint32_t t0, uint32_t t1, uint32_t t2, uint32_t *w, int32_t fy)
{
    int32_t k;
    for (k = 0; k < 2; ++k) { /* channels k and k + 2 */
        const uint32_t e0 = eq_dw_twice(k ? EQ_SXTB16_ROR8(t0) : EQ_SXTB16(t0));
        const uint32_t e1 = eq_dw_twice(k ? EQ_SXTB16_ROR8(t1) : EQ_SXTB16(t1));
        const uint32_t e2 = eq_dw_twice(k ? EQ_SXTB16_ROR8(t2) : EQ_SXTB16(t2));
        w[6 * k + 2 * fy] = eq_dw_pk_lo(e0, e1);
        w[6 * k + 2 * fy + 1] = eq_dw_pk_lo(e1, e2);
        w[6 * (k + 2) + 2 * fy] = eq_dw_pk_hi(e0, e1);
        w[6 * (k + 2) + 2 * fy + 1] = eq_dw_pk_hi(e1, e2);
    }
}

/* The weight pairs of four channels, six words a channel, doubled: int8 weights from t (the
 * first channel's first tap), int4 from weight i on (even); one word of four weights a tap. */
static void eq_dw_quad8(const int8_t *t, int32_t depth, uint32_t *w)
{
    int32_t fy;
    for (fy = 0; fy < 3; ++fy, t += 3 * depth) {
        eq_dw_quad_row(eq_load32(t), eq_load32(t + depth), eq_load32(t + 2 * depth), w, fy);
    }
}

static void eq_dw_quad4(const int8_t *weights, int32_t i, int32_t depth, uint32_t *w)
{
    int32_t fy;
    for (fy = 0; fy < 3; ++fy, i += 3 * depth) {
        eq_dw_quad_row(eq_dw_int4_quad(weights, i), eq_dw_int4_quad(weights, i + depth),
                       eq_dw_int4_quad(weights, i + 2 * depth), w, fy);
    }
}

/* Those of channels c0 .. c0 + 3 (weights as eq_dw_quad_bits). */
EQ_INLINE void eq_dw_quad_weights(const eq_depthwise_t *p, int32_t c0, uint32_t *w)
{
    if (p->weight_bits == 4) {
        eq_dw_quad4(p->weights, c0, p->in_c, w);
    } else {
        eq_dw_quad8(p->weights + c0, p->in_c, w);
    }
}

EQ_INLINE int8_t eq_dw_pair_out(const eq_depthwise_t *p, const eq_dw_pair_t *d, int32_t acc,
                                int32_t mode)
{
    if (mode == 2) {
        return (int8_t)eq_sat8(eq_smmlar(acc, d->m, d->add + (acc >> 31)) >> d->r);
    }
    return (int8_t)EQ_CLAMP(eq_rqu_apply(&d->u, acc), p->act_min, p->act_max);
}

/* Output rows 0 .. n - 1 of the band of one channel in C (plane: its first plane row; plane
 * rows rw words apart). */
EQ_INLINE void eq_dw_pair_rows(const eq_depthwise_t *p, const eq_dw_pair_t *d,
                               const uint32_t *plane, int32_t rw, int8_t *o, int32_t n,
                               int32_t unit, int32_t mode)
{
    const int32_t depth = p->in_c, out_w = p->out_w, pairs = out_w >> 1;
    const int32_t step = unit ? 1 : 2, down = p->stride_h * rw, bias = d->bias;
    int32_t oy, x, j;
    for (oy = 0; oy < n; ++oy, plane += down) {
        const uint32_t *r = plane;
        int8_t *q = o + oy * out_w * depth;
        for (x = 0; x < pairs; ++x, r += step, q += 2 * depth) {
            int32_t s0 = bias, s1 = bias;
            for (j = 0; j < 3; ++j) {
                const uint32_t *rr = r + j * rw, a = d->w[2 * j], b = d->w[2 * j + 1];
                s0 = EQ_SMLAD(rr[0], a, s0);
                s0 = EQ_SMLABT(rr[1], b, s0);
                if (unit) {
                    s1 = EQ_SMLATB(rr[0], a, s1);
                    s1 = EQ_SMLAD(rr[1], b, s1);
                } else {
                    s1 = EQ_SMLAD(rr[1], a, s1);
                    s1 = EQ_SMLABT(rr[2], b, s1);
                }
            }
            q[0] = eq_dw_pair_out(p, d, s0, mode);
            q[depth] = eq_dw_pair_out(p, d, s1, mode);
        }
        if (out_w & 1) { /* the last output alone */
            int32_t s0 = bias;
            for (j = 0; j < 3; ++j) {
                const uint32_t *rr = r + j * rw;
                s0 = EQ_SMLAD(rr[0], d->w[2 * j], s0);
                s0 = EQ_SMLABT(rr[1], d->w[2 * j + 1], s0);
            }
            q[0] = eq_dw_pair_out(p, d, s0, mode);
        }
    }
}

#if EQ_ASM
/* A band of the quad's channels in assembly (eq_dw_run_s1/s2; plane rows 4 * EQ_DW_PR bytes
 * apart, the _m and _n functions 4 * EQ_DW_PRM and 4 * EQ_DW_PRN). Channel by channel, the
 * assembly reads the channel's bias, M and shift from the unpacked arrays and takes it when
 * mode 2's test holds (eq_dw_pair_prepare's, the clamp tested by the caller): the bias doubled
 * (the weights come doubled), the stage's add = (2 offset + 1) << (r - 1); else it sets the channel's bit in the
 * mask it returns and leaves it to C. Rows: r0 the plane pointer, r1-r6 the weight pairs, r7
 * and r8 the two outputs' accumulators, r9-r11 words and the stage's temporaries, r12 the
 * output pointer, lr the end of the row's pairs (the next row's: plus the pitch). Frame: [sp] the doubled bias twice, [sp, #8]
 * M and add, [sp, #16] r, then from [sp, #20] a copy of the eq_dw_run_t. */
typedef struct {
    int32_t depth;        /* 20: bytes between output pixels */
    int32_t span;         /* 24: plane bytes of a row's pairs */
    int32_t next_p;       /* 28: plane bytes from a row's end of pairs to the next row */
    int32_t pitch;        /* 32: plane bytes from one output row's plane rows to the next's */
    const uint32_t *end;  /* 36: the channel's plane pointer after the band (the assembly's) */
    int32_t odd;          /* 40: out_w is odd (the last output alone) */
    const uint32_t *p;    /* 44: channel 0's first plane row of the band */
    int8_t *q;            /* 48: channel 0's first output of the band */
    const uint32_t *w;    /* 52: the weight pairs, six words a channel, doubled */
    const int32_t *bias;  /* 56: channel 0's bias, M and shift */
    const int32_t *mult;  /* 60 */
    const int8_t *shift;  /* 64 */
    int32_t k;            /* 68: 0 (the channel at work) */
    uint32_t add1;        /* 72: 2 * out_offset + 1 */
    int32_t chan;         /* 76: plane bytes from channel to channel */
    int32_t rows;         /* 80: plane bytes of the band's output rows */
    int32_t count;        /* 84: channels */
    uint32_t mask;        /* 88: 0 (the channels left to C) */
} eq_dw_run_t;

#define EQ_DWA_X(s) EQ_DWS_X(s)
#define EQ_DWA_R1 EQ_DWA_X(4 * EQ_DW_PR)
#define EQ_DWA_R2 EQ_DWA_X(8 * EQ_DW_PR)
#define EQ_DWA_M1 EQ_DWA_X(4 * EQ_DW_PRM)
#define EQ_DWA_M2 EQ_DWA_X(8 * EQ_DW_PRM)
#define EQ_DWA_N1 EQ_DWA_X(4 * EQ_DW_PRN)
#define EQ_DWA_N2 EQ_DWA_X(8 * EQ_DW_PRN)
#define EQ_DWA_S1(OFF, A, B)                                      \
    "ldrd    r9, r10, [r0, #" OFF "]\n\t"                         \
    "smlad   r7, r9, " A ", r7\n\t"                               \
    "smlabt  r7, r10, " B ", r7\n\t"                              \
    "smlatb  r8, r9, " A ", r8\n\t"                               \
    "smlad   r8, r10, " B ", r8\n\t"
#define EQ_DWA_S2(OFF, A, B)                                      \
    "ldrd    r9, r10, [r0, #" OFF "]\n\t"                         \
    "ldr     r11, [r0, #" OFF "+8]\n\t"                           \
    "smlad   r7, r9, " A ", r7\n\t"                               \
    "smlabt  r7, r10, " B ", r7\n\t"                              \
    "smlad   r8, r10, " A ", r8\n\t"                              \
    "smlabt  r8, r11, " B ", r8\n\t"
#define EQ_DWA_ONE(OFF, A, B)                                     \
    "ldrd    r9, r10, [r0, #" OFF "]\n\t"                         \
    "smlad   r7, r9, " A ", r7\n\t"                               \
    "smlabt  r7, r10, " B ", r7\n\t"
/* the stage of accumulator A with M in r9, add in r10 (r11 a temporary) */
#define EQ_DWA_STAGE(A)                                           \
    "add     r11, r10, " A ", asr #31\n\t"                        \
    "smmlar  " A ", " A ", r9, r11\n\t"
#define EQ_DWA_FUNC(NAME, TAPS, ONE, STEP)                                                     \
    __asm__(EQ_ASM_FUNC_BEGIN(NAME)                                                         \
            "push    {r4-r11, lr}\n\t"                                                      \
            "sub     sp, sp, #92\n\t"                                                       \
            "ldmia   r0!, {r1-r9}\n\t"                                                      \
            "add     r10, sp, #20\n\t"                                                      \
            "stmia   r10!, {r1-r9}\n\t"                                                     \
            "ldmia   r0, {r1-r9}\n\t"                                                       \
            "stmia   r10, {r1-r9}\n"                                                        \
            "5:\n\t" /* channel k: its stage, or left to C */                               \
            "ldr     r12, [sp, #68]\n\t"                                                    \
            "ldrd    r10, r11, [sp, #56]\n\t"                                               \
            "ldr     r7, [r10, r12, lsl #2]\n\t"                                            \
            "ldr     r9, [r11, r12, lsl #2]\n\t"                                            \
            "ldr     r11, [sp, #64]\n\t"                                                    \
            "ldrsb   r10, [r11, r12]\n\t"                                                   \
            "cmp     r9, #0x40000000\n\t" /* M >= 2^30 */                                   \
            "blt     8f\n\t"                                                                \
            "rsb     r10, r10, #0\n\t"                                                      \
            "sub     r8, r10, #1\n\t"                                                       \
            "cmp     r8, #21\n\t" /* 1 <= r <= 22 */                                        \
            "bhi     8f\n\t"                                                                \
            "adds    r11, r7, #0x20000000\n\t" /* -2^29 < bias < 2^29 */                    \
            "beq     8f\n\t"                                                                \
            "cmp     r11, #0x40000000\n\t"                                                  \
            "bhs     8f\n\t"                                                                \
            "lsl     r7, r7, #1\n\t"                                                        \
            "strd    r7, r7, [sp]\n\t"                                                      \
            "ldr     r11, [sp, #72]\n\t"                                                    \
            "lsl     r11, r11, r8\n\t"                                                      \
            "strd    r9, r11, [sp, #8]\n\t"                                                 \
            "str     r10, [sp, #16]\n\t"                                                    \
            "ldr     r11, [sp, #52]\n\t"                                                    \
            "add     r0, r12, r12, lsl #1\n\t"                                              \
            "add     r0, r11, r0, lsl #3\n\t"                                               \
            "ldmia   r0, {r1-r6}\n\t"                                                       \
            "ldr     r10, [sp, #76]\n\t"                                                    \
            "ldrd    r0, r11, [sp, #44]\n\t"                                                \
            "mla     r0, r10, r12, r0\n\t"                                                  \
            "add     r12, r11, r12\n\t"                                                     \
            "ldr     r11, [sp, #80]\n\t"                                                    \
            "add     r11, r0, r11\n\t"                                                      \
            "str     r11, [sp, #36]\n\t"                                                    \
            "ldr     lr, [sp, #24]\n\t"                                                     \
            "add     lr, r0, lr\n"                                                          \
            "2:\n\t" /* a pair; the row's first: r0, r12 at its start, lr its pairs' end */  \
            "ldrd    r7, r8, [sp]\n\t"                                                      \
            TAPS                                                                            \
            "ldrd    r9, r10, [sp, #8]\n\t"                                                 \
            EQ_DWA_STAGE("r7") EQ_DWA_STAGE("r8")                                           \
            "ldrd    r9, r10, [sp, #16]\n\t"                                                \
            "asr     r7, r7, r9\n\t"                                                        \
            "asr     r8, r8, r9\n\t"                                                        \
            "ssat    r7, #8, r7\n\t"                                                        \
            "ssat    r8, #8, r8\n\t"                                                        \
            "strb    r7, [r12]\n\t"                                                         \
            "strb    r8, [r12, r10]\n\t"                                                    \
            "add     r12, r12, r10, lsl #1\n\t"                                             \
            "add     r0, r0, #" #STEP "\n\t"                                                \
            "cmp     r0, lr\n\t"                                                            \
            "bne     2b\n\t"                                                                \
            "ldr     r7, [sp, #40]\n\t"                                                     \
            "cbz     r7, 4f\n\t"                                                            \
            "ldr     r7, [sp]\n\t"                                                          \
            ONE                                                                             \
            "ldrd    r9, r10, [sp, #8]\n\t"                                                 \
            EQ_DWA_STAGE("r7")                                                              \
            "ldrd    r9, r10, [sp, #16]\n\t"                                                \
            "asr     r7, r7, r9\n\t"                                                        \
            "ssat    r7, #8, r7\n\t"                                                        \
            "strb    r7, [r12]\n\t"                                                         \
            "add     r12, r12, r10\n"                                                       \
            "4:\n\t" /* the next row */                                                     \
            "ldrd    r9, r10, [sp, #28]\n\t"                                                \
            "add     r0, r0, r9\n\t"                                                        \
            "add     lr, lr, r10\n\t"                                                       \
            "ldr     r9, [sp, #36]\n\t"                                                     \
            "cmp     r0, r9\n\t"                                                            \
            "bne     2b\n"                                                                  \
            "6:\n\t" /* the next channel */                                                 \
            "ldr     r12, [sp, #68]\n\t"                                                    \
            "ldr     r11, [sp, #84]\n\t"                                                    \
            "adds    r12, r12, #1\n\t"                                                      \
            "str     r12, [sp, #68]\n\t"                                                    \
            "cmp     r12, r11\n\t"                                                          \
            "bne     5b\n\t"                                                                \
            "ldr     r0, [sp, #88]\n\t"                                                     \
            "add     sp, sp, #92\n\t"                                                       \
            "pop     {r4-r11, pc}\n"                                                        \
            "8:\n\t" /* channel k left to C */                                              \
            "ldr     r11, [sp, #88]\n\t"                                                    \
            "movs    r10, #1\n\t"                                                           \
            "lsl     r10, r10, r12\n\t"                                                     \
            "orr     r11, r11, r10\n\t"                                                     \
            "str     r11, [sp, #88]\n\t"                                                    \
            "b       6b\n\t"                                                                \
            ".size " #NAME ", .-" #NAME "\n\t"                                              \
            ".text\n")
#define EQ_DWA_ONES(R1, R2)                                                                 \
    EQ_DWA_ONE("0", "r1", "r2") EQ_DWA_ONE(R1, "r3", "r4") EQ_DWA_ONE(R2, "r5", "r6")
#define EQ_DWA_S1S(R1, R2)                                                                  \
    EQ_DWA_S1("0", "r1", "r2") EQ_DWA_S1(R1, "r3", "r4") EQ_DWA_S1(R2, "r5", "r6")
#define EQ_DWA_S2S(R1, R2)                                                                  \
    EQ_DWA_S2("0", "r1", "r2") EQ_DWA_S2(R1, "r3", "r4") EQ_DWA_S2(R2, "r5", "r6")
EQ_DWA_FUNC(eq_dw_run_s1, EQ_DWA_S1S(EQ_DWA_R1, EQ_DWA_R2), EQ_DWA_ONES(EQ_DWA_R1, EQ_DWA_R2),
            4);
EQ_DWA_FUNC(eq_dw_run_s2, EQ_DWA_S2S(EQ_DWA_R1, EQ_DWA_R2), EQ_DWA_ONES(EQ_DWA_R1, EQ_DWA_R2),
            8);
EQ_DWA_FUNC(eq_dw_run_s1_m, EQ_DWA_S1S(EQ_DWA_M1, EQ_DWA_M2),
            EQ_DWA_ONES(EQ_DWA_M1, EQ_DWA_M2), 4);
EQ_DWA_FUNC(eq_dw_run_s2_m, EQ_DWA_S2S(EQ_DWA_M1, EQ_DWA_M2),
            EQ_DWA_ONES(EQ_DWA_M1, EQ_DWA_M2), 8);
EQ_DWA_FUNC(eq_dw_run_s1_n, EQ_DWA_S1S(EQ_DWA_N1, EQ_DWA_N2),
            EQ_DWA_ONES(EQ_DWA_N1, EQ_DWA_N2), 4);
EQ_DWA_FUNC(eq_dw_run_s2_n, EQ_DWA_S2S(EQ_DWA_N1, EQ_DWA_N2),
            EQ_DWA_ONES(EQ_DWA_N1, EQ_DWA_N2), 8);
uint32_t eq_dw_run_s1(const eq_dw_run_t *a);
uint32_t eq_dw_run_s2(const eq_dw_run_t *a);
uint32_t eq_dw_run_s1_m(const eq_dw_run_t *a);
uint32_t eq_dw_run_s2_m(const eq_dw_run_t *a);
uint32_t eq_dw_run_s1_n(const eq_dw_run_t *a);
uint32_t eq_dw_run_s2_n(const eq_dw_run_t *a);
typedef char eq_dw_run_ok[(sizeof(void *) == 4 && sizeof(eq_dw_run_t) == 72) ? 1 : -1];
static const int32_t eq_dw_no_bias[4]; /* the assembly's biases when the op has none */
#endif

/* Output rows 0 .. n - 1 of a band of the channels c0 + k with bit k of `left` in C (plane:
 * channel c0's first plane row; plane rows 4 * rw bytes apart, channels rw bytes; w: their
 * weight pairs): their stages prepared in d on the first band, mode 0 left out. */
static void eq_dw_pair_channels(const eq_depthwise_t *p, eq_dw_pair_t *d, const uint32_t *w,
                                int32_t c0, const uint32_t *plane, int32_t rw, int8_t *o,
                                int32_t n, int32_t count, uint32_t left, int first)
{
    int32_t k;
    for (k = 0; k < count; ++k) {
        const uint32_t *pk = plane + k * (rw / 4);
        if (!(left >> k & 1)) {
            continue;
        }
        if (first) {
            eq_dw_pair_prepare(p, c0 + k, w + 6 * k, &d[k]);
        }
        if (d[k].mode == 0) {
            continue;
        }
        if (p->stride_w == 1) {
            if (d[k].mode == 2) {
                eq_dw_pair_rows(p, &d[k], pk, rw, o + k, n, 1, 2);
            } else {
                eq_dw_pair_rows(p, &d[k], pk, rw, o + k, n, 1, 1);
            }
        } else if (d[k].mode == 2) {
            eq_dw_pair_rows(p, &d[k], pk, rw, o + k, n, 0, 2);
        } else {
            eq_dw_pair_rows(p, &d[k], pk, rw, o + k, n, 0, 1);
        }
    }
}

#if EQ_ASM
typedef void (*eq_dw_fill_fn)(int16_t *, const int8_t *, int32_t, int32_t, int32_t, int32_t,
                              uint32_t);

/* The whole image in one band, weights as eq_dw_quad_bits, the fill and the run in assembly:
 * quad by quad the weights, one call of each (the same but for c0), the channels the run
 * leaves in C. Returns the first channel left (fewer than four). */
EQ_NOINLINE int32_t eq_dw_one_band(const eq_depthwise_t *p, const int8_t *in, int8_t *out,
                                   const eq_dw_band_t *g, eq_dw_run_t *a, uint32_t *w,
                                   uint32_t (*run)(const eq_dw_run_t *), eq_dw_fill_fn fill)
{
    const int32_t depth = p->in_c, line = p->in_w * depth;
    const int32_t cols = EQ_MIN(p->in_w, g->count - p->pad_w);
    const int32_t lo = EQ_MIN(g->rows, p->pad_h);
    const int32_t rows = EQ_MAX(lo, EQ_MIN(g->rows, p->in_h + p->pad_h)) - lo;
    const uint32_t off2 = eq_pair16(p->in_offset, p->in_offset);
    int16_t *dst = (int16_t *)(void *)a->p + lo * 2 * g->rs + EQ_MIN(p->pad_w, g->count);
    const int8_t *src = in + (lo - p->pad_h) * line;
    eq_dw_pair_t d[4];
    int32_t c0, k;
    a->rows = p->out_h * p->stride_h * 4 * g->rs;
    a->count = 4;
    for (c0 = 0; c0 + 4 <= depth; c0 += 4) {
        uint32_t left;
        eq_dw_quad_weights(p, c0, w);
        fill(dst, src + c0, rows, line, depth, cols, off2);
        a->q = out + c0;
        a->bias = p->bias ? p->bias + c0 : eq_dw_no_bias;
        a->mult = p->multiplier + c0;
        a->shift = p->shift + c0;
        left = run(a);
        if (left != 0) {
            eq_dw_pair_channels(p, d, w, c0, a->p, g->rs, out + c0, p->out_h, 4, left, 1);
            for (k = 0; k < 4; ++k) {
                if ((left >> k & 1) && d[k].mode == 0) {
                    eq_dw_channel(p, in, out, 0, c0 + k);
                }
            }
        }
    }
    return c0;
}
#endif

/* Band by band, channel quad by channel quad: mode 2 in assembly (eq_dw_run_*) where the
 * plane rows are EQ_DW_PR, EQ_DW_PRM or EQ_DW_PRN bytes, the clamp the whole int8 range and a
 * row has a pair; the channels it leaves (all without it: bit k of `left` for channel
 * c0 + k, the same for every band of the quad) in C. */
EQ_NO_MEMSET static void eq_depthwise3x3_pairs(const eq_depthwise_t *p, const int8_t *in,
                                               int8_t *out, int8_t *scratch)
{
    const int32_t depth = p->in_c, out_h = p->out_h, out_w = p->out_w;
    const eq_dw_band_t g = eq_dw_band(p);
    const uint32_t *plane = (const uint32_t *)(const void *)scratch;
    int16_t *planes = (int16_t *)(void *)scratch;
    eq_dw_pair_t d[4];
    uint32_t w[24], left = 0;
    int32_t b, c0, k, oy0, first = 0;
#if EQ_ASM
    uint32_t (*run)(const eq_dw_run_t *) = NULL;
    eq_dw_run_t a;
    if ((g.rs == EQ_DW_PR || g.rs == EQ_DW_PRM || g.rs == EQ_DW_PRN) && out_w > 1
        && p->act_min == -128 && p->act_max == 127) {
        const int32_t s = p->stride_w;
        a.depth = depth;
        a.span = (out_w >> 1) * 4 * s;
        a.next_p = p->stride_h * 4 * g.rs - a.span;
        a.pitch = p->stride_h * 4 * g.rs;
        a.odd = out_w & 1;
        a.p = plane;
        a.w = w;
        a.k = 0;
        a.add1 = (uint32_t)2 * (uint32_t)p->out_offset + 1u;
        a.chan = g.rs;
        a.mask = 0;
        run = g.rs == EQ_DW_PR    ? (s == 1 ? eq_dw_run_s1 : eq_dw_run_s2)
              : g.rs == EQ_DW_PRM ? (s == 1 ? eq_dw_run_s1_m : eq_dw_run_s2_m)
                                  : (s == 1 ? eq_dw_run_s1_n : eq_dw_run_s2_n);
    }
#endif
    eq_dw_plane_clear(p, planes, &g);
#if EQ_ASM
    if (run != NULL && g.band == out_h && p->batches == 1 && eq_dw_quad_bits(p)
        && EQ_MIN(p->in_w, g.count - p->pad_w) >= 2) {
        first = eq_dw_one_band(p, in, out, &g, &a, w, run,
                               g.rs == EQ_DW_PR    ? eq_dw_rows_pr
                               : g.rs == EQ_DW_PRM ? eq_dw_rows_prm
                                                   : eq_dw_rows_prn);
    }
#endif
    for (b = 0; b < p->batches; ++b) {
        const int8_t *image = in + b * p->in_h * p->in_w * depth;
        for (c0 = first; c0 < depth; c0 += 4) {
            const int32_t nch = EQ_MIN(4, depth - c0);
            if (nch == 4 && eq_dw_quad_bits(p)) {
                eq_dw_quad_weights(p, c0, w);
            } else {
                for (k = 0; k < nch; ++k) {
                    eq_dw_pair_weights(p, c0 + k, w + 6 * k);
                }
            }
            for (oy0 = 0; oy0 < out_h; oy0 += g.band) {
                const int32_t n = EQ_MIN(g.band, out_h - oy0);
                const int32_t iy0 = oy0 * p->stride_h - p->pad_h;
                int8_t *o = out + ((b * out_h + oy0) * out_w) * depth + c0;
                /* the rows this band shares with the band before: copied, not converted */
                const int32_t keep = oy0 > 0 ? EQ_MAX(0, 3 - p->stride_h) : 0;
                if (keep > 0) {
                    eq_dw_copy((uint32_t *)(void *)planes,
                               (const uint32_t *)(const void *)(planes + 2 * g.rs * g.band
                                                                * p->stride_h),
                               keep * g.rs);
                }
                eq_dw_plane_rows(p, image, iy0 + keep, (n - 1) * p->stride_h + 3 - keep, c0,
                                 nch, planes + 2 * g.rs * keep, &g);
                left = (1u << nch) - 1;
#if EQ_ASM
                if (run != NULL) {
                    a.q = o;
                    a.bias = p->bias ? p->bias + c0 : eq_dw_no_bias;
                    a.mult = p->multiplier + c0;
                    a.shift = p->shift + c0;
                    a.rows = n * p->stride_h * 4 * g.rs;
                    a.count = nch;
                    left = run(&a);
                }
#endif
                if (left != 0) {
                    eq_dw_pair_channels(p, d, w, c0, plane, g.rs, o, n, nch, left, oy0 == 0);
                }
            }
            for (k = 0; left != 0 && k < nch; ++k) {
                if ((left >> k & 1) && d[k].mode == 0) {
                    eq_dw_channel(p, in, out, b, c0 + k);
                }
            }
        }
    }
}

#endif /* EQ_DEPTHWISE_PAIRS_H */
