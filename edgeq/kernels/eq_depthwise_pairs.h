/* edgeq kernels, private to eq_depthwise.c: the 3x3 depthwise convolution two outputs at a
 * time (eq_depthwise3x3_pairs), its int16 planes, its weight pairs and the C around its
 * assembly (eq_depthwise_run.h). Included after
 * eq_dw_channel (the reference code for channels without a fast stage). Only with EQ_FAST;
 * the assembly with EQ_ASM.
 */
#ifndef EQ_DEPTHWISE_PAIRS_H
#define EQ_DEPTHWISE_PAIRS_H

#include "eq_internal.h"
#include "eq_depthwise_asm.h"
#include "eq_depthwise_run.h"

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
 * fast stages use eq_rqu_apply in C (the weights halved again; the assembly also takes left
 * shifts of 0 to 7, eq_depthwise_run.h); channels without one go through the reference
 * code. */
#define EQ_DW_BAND_BYTES 3584 /* scratch for a band of planes; edgeq.deploy.cgen mirrors it */

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
        if (nch < 4 || EQ_ASM) { /* (with the assembly: rows it cannot fill, rare) */
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
    /* mode 2: EQ_RQ_FOLDED's conditions (eq_rqc_make) with the bias below 2^29; in C only
     * without the assembly (which takes those channels where it can; else eq_rqu_apply's
     * folded form: less code) */
    if (!EQ_ASM && m >= (1 << 30) && shift <= -1 && shift >= -22 && bias < (1 << 29)
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

#ifndef EQ_DW_LOW_QUADS
/* 1 (eq_depthwise_low.c, in the units of engines with 2- or 3-bit 3x3 depthwise weights):
 * their channel quads too take the quad path; 0 leaves the int8 and int4 code as it is */
#define EQ_DW_LOW_QUADS 0
#endif

#if EQ_DW_LOW_QUADS
/* Weights i .. i + 3 (2 or 3 bits, i a multiple of 4: whole bytes of the dense stream for 2
 * bits, a byte or a nibble boundary for 3) as four int8 bytes: each value in its byte, its
 * sign bit copied into the byte's top bits. */
EQ_INLINE uint32_t eq_dw_low_quad(const int8_t *w, int32_t i, int32_t bits)
{
    const uint8_t *b = (const uint8_t *)w;
    if (bits == 2) {
        const uint32_t v = b[i >> 2];
        const uint32_t q = (v & 3u) | (v & 0xCu) << 6 | (v & 0x30u) << 12 | (v & 0xC0u) << 18;
        return q | (q & 0x02020202u) * 0x7Eu;
    } else {
        const uint32_t at = 3u * (uint32_t)i; /* the 12 bits in two bytes */
        const uint32_t v = ((uint32_t)b[at >> 3] | (uint32_t)b[(at >> 3) + 1] << 8) >> (at & 7u);
        const uint32_t q = (v & 7u) | (v & 0x38u) << 5 | (v & 0x1C0u) << 10 | (v & 0xE00u) << 15;
        return q | (q & 0x04040404u) * 0x3Eu;
    }
}
#endif

/* Whether eq_dw_quad_weights takes the op's weights: int8, int4 with every quad's first
 * weight at an even index, 2 or 3 bits with it at a multiple of 4. */
EQ_INLINE int eq_dw_quad_bits(const eq_depthwise_t *p)
{
    return p->weight_bits == 8 || (p->weight_bits == 4 && p->in_c % 2 == 0)
           || (EQ_DW_LOW_QUADS && p->weight_bits < 4 && p->in_c % 4 == 0);
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
 * first channel's first tap), int4 (or 2 or 3 bits) from weight i on (even, or a multiple of
 * 4); one word of four weights a tap. */
static void eq_dw_quad8(const int8_t *t, int32_t depth, uint32_t *w)
{
    int32_t fy;
    for (fy = 0; fy < 3; ++fy, t += 3 * depth) {
        eq_dw_quad_row(eq_load32(t), eq_load32(t + depth), eq_load32(t + 2 * depth), w, fy);
    }
}

static void eq_dw_quad4(const int8_t *weights, int32_t i, int32_t depth, uint32_t *w)
{
    uint32_t t[9]; /* the taps as int8 first: one loop of each (less code) */
    int32_t j;
    for (j = 0; j < 9; ++j, i += depth) {
        t[j] = eq_dw_int4_quad(weights, i);
    }
    for (j = 0; j < 3; ++j) {
        eq_dw_quad_row(t[3 * j], t[3 * j + 1], t[3 * j + 2], w, j);
    }
}

#if EQ_DW_LOW_QUADS
/* The same from 2- or 3-bit weights (channel c0 a multiple of 4); not inlined: the int8 and
 * int4 callers then compile almost as without it. */
EQ_NOINLINE void eq_dw_quad_low(const eq_depthwise_t *p, int32_t c0, uint32_t *w)
{
    const int32_t depth = p->in_c, bits = p->weight_bits;
    uint32_t t[9];
    int32_t j;
    for (j = 0; j < 9; ++j) {
        t[j] = eq_dw_low_quad(p->weights, c0 + j * depth, bits);
    }
    for (j = 0; j < 3; ++j) {
        eq_dw_quad_row(t[3 * j], t[3 * j + 1], t[3 * j + 2], w, j);
    }
}
#endif

/* Those of channels c0 .. c0 + 3 (weights as eq_dw_quad_bits). */
EQ_INLINE void eq_dw_quad_weights(const eq_depthwise_t *p, int32_t c0, uint32_t *w)
{
    if (p->weight_bits == 4) {
        eq_dw_quad4(p->weights, c0, p->in_c, w);
#if EQ_DW_LOW_QUADS
    } else if (p->weight_bits < 4) {
        eq_dw_quad_low(p, c0, w);
#endif
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
        if (!EQ_ASM && d[k].mode == 2) {
            if (p->stride_w == 1) {
                eq_dw_pair_rows(p, &d[k], pk, rw, o + k, n, 1, 2);
            } else {
                eq_dw_pair_rows(p, &d[k], pk, rw, o + k, n, 0, 2);
            }
        } else if (p->stride_w == 1) {
            eq_dw_pair_rows(p, &d[k], pk, rw, o + k, n, 1, 1);
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
