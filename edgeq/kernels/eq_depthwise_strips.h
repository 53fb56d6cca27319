/* edgeq kernels, private to eq_depthwise.c: the 3x3 and 1x3 depthwise strips in C.
 *
 * Per channel quad: each channel's weights and output stage prepared (eq_dw_chan_prepare) as
 * the eight words a strip loads (eq_dw_strip_words), the input rows copied into int16 rows
 * with the offset added (eq_dw_fill), their padding zeroed (eq_dw_ring_clear), then the strips
 * in assembly (eq_depthwise_asm.h) or in C (eq_dw_strip_c): from a ring of three rows
 * (eq_depthwise3x3_fast) or from planes of all rows (eq_depthwise3x3_planes). Only with
 * EQ_FAST.
 */
#ifndef EQ_DEPTHWISE_STRIPS_H
#define EQ_DEPTHWISE_STRIPS_H

#include "eq_depthwise_asm.h"

/* Short zeroing loops stay loops: GCC would turn them into memset calls, which cost more than
 * the few stores they replace. */
#if defined(__GNUC__) && !defined(__clang__)
#define EQ_NO_MEMSET __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define EQ_NO_MEMSET
#endif

#if EQ_FAST
/* One channel's nine weights and output stage, prepared once per call. */
typedef struct {
    uint32_t w01[3]; /* filter row k: (tap 0, tap 1) */
    int32_t w2[3];   /* filter row k: tap 2 */
    eq_rqc_t rq;
    eq_rqu_t any;
    int32_t mode;    /* EQ_DWS_* */
    int32_t c;       /* the channel */
} eq_dw_chan_t;

static void eq_dw_chan_prepare(const eq_depthwise_t *p, int32_t c, eq_dw_chan_t *d)
{
    const int full = p->act_min == -128 && p->act_max == 127;
    int32_t k, kind;
    for (k = 0; k < 3; ++k) {
        /* a 1x3 filter is the middle row of a 3x3 one (its rows 0 and 2 zero) */
        const int32_t row = p->filter_h == 3 ? k : 0, i = 3 * row * p->out_c + c;
        if (p->filter_h == 1 && k != 1) {
            d->w01[k] = 0;
            d->w2[k] = 0;
            continue;
        }
        d->w01[k] = eq_pair16(eq_weight(p->weights, i, p->weight_bits),
                              eq_weight(p->weights, i + p->out_c, p->weight_bits));
        d->w2[k] = eq_weight(p->weights, i + 2 * p->out_c, p->weight_bits);
    }
    d->rq = eq_rqc_make(p->multiplier[c], p->shift[c], p->bias ? p->bias[c] : 0, p->out_offset);
    d->any = eq_rqu_make(d->rq, p->out_offset);
    d->c = c;
    kind = EQ_RQ_KIND(d->rq);
    d->mode = !full ? EQ_DWS_C : kind == EQ_RQ_FOLDED ? EQ_DWS_FOLDED
              : kind == EQ_RQ_RIGHT ? EQ_DWS_RIGHT : EQ_DWS_C;
}

/* The strip words of a channel for rotation m (filter row 0 in slot m). */
static void eq_dw_strip_words(const eq_dw_chan_t *d, int32_t m, uint32_t w[8])
{
    /* the filter row that slot j holds: (j - m) mod 3 */
    static const int8_t rows[3][3] = {{0, 1, 2}, {2, 0, 1}, {1, 2, 0}};
    const int8_t *row = rows[m];
    int32_t j;
    for (j = 0; j < 3; ++j) {
        w[j] = d->w01[row[j]];
    }
    w[3] = eq_pair16(d->w2[row[0]], d->w2[row[1]]);
    w[4] = ((uint32_t)d->w2[row[2]] << 16) | (uint32_t)(d->any.right & 0xFF);
    w[5] = (uint32_t)d->any.m2;
    w[6] = (uint32_t)d->any.add;
    w[7] = (uint32_t)d->rq.bias;
}

/* One output row of one channel in C, from the ring rows (slots rs bytes apart): the taps as
 * the assembly takes them (SMLAD on (v[x], v[x+1]) words, tap 2 from the next word), any
 * output stage, any clamp. */
static void eq_dw_strip_c(const eq_depthwise_t *p, const eq_dw_chan_t *d, const uint32_t *w,
                          const int16_t *ring, int32_t rs, int8_t *o)
{
    const int32_t step = p->stride_w, depth = p->in_c;
    int32_t ox, j;
    for (ox = 0; ox < p->out_w; ++ox, o += depth) {
        int32_t acc = (int32_t)w[7];
        for (j = 0; j < 3; ++j) {
            const int16_t *v = (const int16_t *)(const void *)((const int8_t *)(const void *)ring
                                                              + j * rs) + ox * step;
            const uint32_t pair = eq_load32(v), next = eq_load32(v + 1);
            const uint32_t w2 = j < 2 ? (w[3] >> (16 * j)) & 0xFFFFu : w[4] >> 16;
            acc = EQ_SMLAD(pair, w[j], acc);
            acc = EQ_SMLATT(next, w2 << 16, acc); /* v[x+2] times tap 2 */
        }
        if (d->mode != EQ_DWS_C || EQ_RQ_KIND(d->rq) == EQ_RQ_LEFT) {
            *o = (int8_t)EQ_CLAMP(eq_rqu_apply(&d->any, acc), p->act_min, p->act_max);
        } else {
            const eq_out_t oo = {p->multiplier, p->shift, p->out_offset, p->act_min, p->act_max};
            *o = eq_output(oo, acc, d->c);
        }
    }
}

/* Input row iy of channels c0 .. c0 + nch - 1 into the rows at row0 + k * cstep bytes (a ring
 * slot, or a plane row; kind 1 and 2: the ring's and the planes' assembly): row value x is
 * input column x - pad_w plus the input offset, 0 outside the image, stored at position
 * x + lead (lead = pad_w & 1, so that the image's first column starts a word). The padding
 * positions are zeroed once per quad (eq_dw_ring_clear); a row outside the image is zeroed
 * whole. Four channels come from one input word: SXTAB16 adds the offset to channels (0, 2)
 * and (1, 3), and two neighbouring columns are paired into each channel's row with
 * PKHBT/PKHTB. */
EQ_NO_MEMSET static void eq_dw_fill(const eq_depthwise_t *p, const int8_t *image, int32_t iy, int32_t c0,
                       int32_t nch, int16_t *row0, int32_t cstep, int32_t count, int kind)
{
    const int32_t depth = p->in_c, in_w = p->in_w, pad_w = p->pad_w, lead = pad_w & 1;
    const int32_t first = pad_w + lead; /* position of input column 0, even */
    const int32_t cols = EQ_MAX(0, EQ_MIN(in_w, count - pad_w)); /* input columns used */
    const uint32_t off2 = eq_pair16(p->in_offset, p->in_offset);
    int16_t *row[4];
    int32_t k, x;
    for (k = 0; k < nch; ++k) {
        row[k] = (int16_t *)(void *)((int8_t *)(void *)row0 + k * cstep);
    }
    (void)kind;
    if (iy < 0 || iy >= p->in_h) {
        const int32_t words = (count + lead + 1) >> 1;
        for (k = 0; k < nch; ++k) {
            uint32_t *z = (uint32_t *)(void *)row[k];
            for (x = 0; x < words; ++x) {
                z[x] = 0;
            }
        }
        return;
    }
    image += iy * in_w * depth + c0;
    if (nch == 4) {
        uint32_t *r0 = (uint32_t *)(void *)row[0] + first / 2;
#if EQ_ASM
        if (kind != 0 && cols >= 2) {
            if (kind == 1) {
                eq_dw_fill_asm(r0, image, depth, cols >> 1, off2);
            } else {
                eq_dw_fill_asm_plane(r0, image, depth, cols >> 1, off2);
            }
            x = cols & ~1;
        } else
#endif
        {
            uint32_t *r1 = (uint32_t *)(void *)row[1] + first / 2;
            uint32_t *r2 = (uint32_t *)(void *)row[2] + first / 2;
            uint32_t *r3 = (uint32_t *)(void *)row[3] + first / 2;
            for (x = 0; x + 1 < cols; x += 2) {
                const uint32_t va = eq_load32(image + x * depth);
                const uint32_t vb = eq_load32(image + (x + 1) * depth);
                const uint32_t a02 = EQ_SXTAB16(off2, va), a13 = EQ_SXTAB16_ROR8(off2, va);
                const uint32_t b02 = EQ_SXTAB16(off2, vb), b13 = EQ_SXTAB16_ROR8(off2, vb);
                r0[x >> 1] = (a02 & 0xFFFFu) | (b02 << 16);
                r2[x >> 1] = (a02 >> 16) | (b02 & 0xFFFF0000u);
                r1[x >> 1] = (a13 & 0xFFFFu) | (b13 << 16);
                r3[x >> 1] = (a13 >> 16) | (b13 & 0xFFFF0000u);
            }
        }
        if (x < cols) { /* an odd last column: its right neighbour stays padding */
            for (k = 0; k < 4; ++k) {
                row[k][first + x] = (int16_t)(image[x * depth + k] + p->in_offset);
            }
        }
        return;
    }
    for (k = 0; k < nch; ++k) {
        for (x = 0; x < cols; ++x) {
            row[k][first + x] = (int16_t)(image[x * depth + k] + p->in_offset);
        }
    }
}

/* The padding positions (before the image's first column and after its last, up to the
 * strips' last read) of `rows` rows of four channels (row j, channel k at j * rstep + k * cstep
 * bytes) to 0, once per quad: the fills never write them. */
EQ_NO_MEMSET static void eq_dw_ring_clear(const eq_depthwise_t *p, int16_t *ring, int32_t rows,
                                          int32_t rstep, int32_t cstep, int32_t count)
{
    const int32_t lead = p->pad_w & 1, first = p->pad_w + lead; /* first is even */
    const int32_t cols = EQ_MAX(0, EQ_MIN(p->in_w, count - p->pad_w));
    const int32_t tail = first + cols, stop = count + lead;
    int32_t j, x;
    for (j = 0; j < 4 * rows; ++j) {
        int16_t *row = (int16_t *)(void *)((int8_t *)(void *)ring + (j >> 2) * rstep
                                           + (j & 3) * cstep);
        uint32_t *words = (uint32_t *)(void *)row;
        for (x = 0; x < first; x += 2) {
            words[x >> 1] = 0;
        }
        x = tail;
        if (x & 1 && x < stop) {
            row[x++] = 0;
        }
        for (; x < stop; x += 2) {
            words[x >> 1] = 0; /* may zero one value past stop: inside the row */
        }
    }
}

/* Whether the planes take the convolution: 1x3 filters (3x3 ones of narrow outputs do better
 * in eq_depthwise3x3_quads, whose set-up is shared by all quads of a row: measured on
 * vww_96_int8's 6x6 and 3x3 layers), rows of at most 16 values with the lead (count + lead),
 * at most EQ_DWP_MAX_ROWS plane rows. edgeq.deploy.cgen.scratch_bytes mirrors this. */
#define EQ_DWP_MAX_ROWS 32
static int eq_dw_planes_fit(const eq_depthwise_t *p)
{
    const int32_t width = (p->out_w - 1) * p->stride_w + 3, count = (width + 2) & ~1;
    return p->filter_h == 1 && 2 * (count + (p->pad_w & 1)) <= EQ_DWP_RS
           && (p->out_h - 1) * p->stride_h + 3 <= EQ_DWP_MAX_ROWS;
}

/* Channel quad by channel quad: all the quad's padded input rows into planes (scratch: plane
 * rows, then the prepared strips), then the whole quad in one eq_dwp1_s1/s2 call (assembly; the
 * channels it leaves, or all without EQ_ASM, row by row through eq_dw_strip_c). */
static void eq_depthwise3x3_planes(const eq_depthwise_t *p, const int8_t *in, int8_t *out,
                                   int8_t *scratch)
{
    const int32_t depth = p->in_c, out_h = p->out_h, out_w = p->out_w;
    const int32_t width = (out_w - 1) * p->stride_w + 3, count = (width + 2) & ~1;
    const int32_t lead = p->pad_w & 1, rows = (out_h - 1) * p->stride_h + 3;
    const int32_t pad_h = p->pad_h + (p->filter_h == 1); /* 1x3: the middle row */
    const int32_t row_bytes = 4 * EQ_DWP_RS;
    const int asm_ok = EQ_ASM && (p->stride_w == 1 || p->stride_w == 2);
    int16_t *plane = (int16_t *)(void *)scratch;
    uint32_t *strips = (uint32_t *)(void *)(scratch + rows * row_bytes); /* [4][8] */
    int32_t b, c0, k, r, oy;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *image = in + b * p->in_h * p->in_w * depth;
        int8_t *image_out = out + b * out_h * out_w * depth;
        for (c0 = 0; c0 < depth; c0 += 4) {
            const int32_t nch = EQ_MIN(4, depth - c0);
            eq_dw_chan_t ch[4];
            eq_dwp_t q;
            int32_t left = 0;
            q.p = plane + lead;
            q.o = image_out + c0;
            q.cons = strips;
            q.span = out_w * p->stride_w * 2;
            q.depth = depth;
            q.offset = p->out_offset;
            q.odd = out_w & 1;
            q.modes = 0;
            q.row_step = p->stride_h * row_bytes;
            q.chan_step = EQ_DWP_RS;
            q.rows = out_h;
            for (k = 0; k < nch; ++k) {
                int32_t mode;
                eq_dw_chan_prepare(p, c0 + k, &ch[k]);
                eq_dw_strip_words(&ch[k], 0, strips + 8 * k);
                mode = asm_ok && ch[k].mode != EQ_DWS_C ? ch[k].mode : EQ_DWS_SKIP;
                left += mode == EQ_DWS_SKIP;
                q.modes |= mode << (2 * k);
            }
            eq_dw_ring_clear(p, plane, rows, row_bytes, EQ_DWP_RS, count);
            for (r = 0; r < rows; ++r) {
                eq_dw_fill(p, image, r - pad_h, c0, nch,
                           (int16_t *)(void *)(scratch + r * row_bytes), EQ_DWP_RS, count,
                           EQ_ASM ? 2 : 0);
            }
#if EQ_ASM
            if (left < nch) { /* 1x3 filters only: the middle plane rows */
                q.p = plane + lead + 2 * EQ_DWP_RS;
                (p->stride_w == 1 ? eq_dwp1_s1 : eq_dwp1_s2)(&q);
            }
#endif
            for (k = 0; k < nch && left > 0; ++k) {
                if (((q.modes >> (2 * k)) & 3) != EQ_DWS_SKIP) {
                    continue;
                }
                for (oy = 0; oy < out_h; ++oy) {
                    eq_dw_strip_c(p, &ch[k], strips + 8 * k,
                                  (const int16_t *)(const void *)(scratch
                                      + oy * p->stride_h * row_bytes + k * EQ_DWP_RS) + lead,
                                  row_bytes, image_out + oy * out_w * depth + c0 + k);
                }
            }
        }
    }
}

/* Channel quad by channel quad (the last one may hold fewer channels), output row by output
 * row: the new input rows into the ring, then the quad's strips (1x3 filters: eq_dwp1_s1/s2
 * in assembly; the channels it leaves, 3x3 filters or all without EQ_ASM, eq_dw_strip_c). */
/* The one-row assembly strip for 1x3 filters (eq_dwp1_s1/s2), NULL from the 3x3 entry point,
 * so that firmware without 1x3 filters links none of it. */
typedef void (*eq_dw_row1_fn)(const eq_dwp_t *q);

static void eq_depthwise3x3_fast(const eq_depthwise_t *p, const int8_t *in, int8_t *out,
                                 int8_t *scratch, eq_dw_row1_fn row1)
{
    const int32_t depth = p->in_c, out_h = p->out_h, out_w = p->out_w;
    const int32_t width = (out_w - 1) * p->stride_w + 3;
    const int32_t count = (width + 2) & ~1; /* the strips read one value past the row */
    const int32_t lead = p->pad_w & 1; /* ring positions are columns + lead */
    const int32_t rs = 2 * (count + lead) <= EQ_DW_RS ? EQ_DW_RS
                       : (2 * (count + lead) + 3) & ~3;
    const int asm_ok = EQ_ASM && (p->filter_h == 1 ? row1 != NULL : rs == EQ_DW_RS)
                       && (p->stride_w == 1 || p->stride_w == 2);
    int16_t *ring = (int16_t *)(void *)scratch;
    uint32_t *strips = (uint32_t *)(void *)(scratch + 12 * rs); /* [3][4][8] */
    int32_t b, c0, k, oy, m;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *image = in + b * p->in_h * p->in_w * depth;
        for (c0 = 0; c0 < depth; c0 += 4) {
            const int32_t nch = EQ_MIN(4, depth - c0);
            eq_dw_chan_t ch[4];
            eq_dwq_t q;
            int32_t held[3] = {INT32_MIN, INT32_MIN, INT32_MIN};
            int32_t left = 0; /* channels for eq_dw_strip_c */
            q.p = ring + lead;
            eq_dw_ring_clear(p, ring, 3, rs, 3 * rs, count);
            q.span = out_w * p->stride_w * 2;
            q.depth = depth;
            q.offset = p->out_offset;
            q.odd = out_w & 1;
            q.modes = 0;
            for (k = 0; k < nch; ++k) {
                int32_t mode;
                eq_dw_chan_prepare(p, c0 + k, &ch[k]);
                mode = asm_ok && ch[k].mode != EQ_DWS_C ? ch[k].mode : EQ_DWS_SKIP;
                left += mode == EQ_DWS_SKIP;
                q.modes |= mode << (2 * k);
            }
            for (k = 0; k < nch; ++k) {
                /* the 1x3 assembly takes rotation 0 only; C strips and 3x3 all three */
                for (m = 0; m < (p->filter_h == 1 && left == 0 ? 1 : 3); ++m) {
                    eq_dw_strip_words(&ch[k], m, strips + (4 * m + k) * 8);
                }
            }
            for (oy = 0; oy < out_h; ++oy) {
                /* a 1x3 filter reads input row oy * stride_h - pad_h as the middle row */
                const int32_t iy0 = oy * p->stride_h - p->pad_h - (p->filter_h == 1);
                int8_t *o = out + ((b * out_h + oy) * out_w) * depth + c0;
                for (k = 0; k < 3; ++k) {
                    const int32_t iy = iy0 + k, slot = ((iy % 3) + 3) % 3;
                    if (p->filter_h == 1 && k != 1 && left == 0) {
                        continue; /* the assembly reads the middle row only */
                    }
                    if (held[slot] != iy) {
                        eq_dw_fill(p, image, iy, c0, nch,
                                   (int16_t *)(void *)(scratch + slot * rs), 3 * rs, count,
                                   EQ_ASM && rs == EQ_DW_RS);
                        held[slot] = iy;
                    }
                }
                m = ((iy0 % 3) + 3) % 3;
#if EQ_ASM
                if (left < nch && p->filter_h == 1 && row1 != NULL) {
                    /* one row: rotation 0's words (slot 1's = the filter), the ring pointer
                     * on the slot that holds the middle row */
                    const int32_t mid = (((iy0 + 1) % 3) + 3) % 3;
                    eq_dwp_t q1;
                    q1.p = (const int16_t *)(const void *)(scratch + mid * rs) + lead;
                    q1.o = o;
                    q1.cons = strips;
                    q1.span = q.span;
                    q1.depth = depth;
                    q1.offset = q.offset;
                    q1.odd = q.odd;
                    q1.modes = q.modes;
                    q1.row_step = 0;
                    q1.chan_step = 3 * rs;
                    q1.rows = 1;
                    row1(&q1);
                }
#endif
                for (k = 0; k < nch && left > 0; ++k) {
                    if (((q.modes >> (2 * k)) & 3) == EQ_DWS_SKIP) {
                        eq_dw_strip_c(p, &ch[k], strips + (4 * m + k) * 8,
                                      (const int16_t *)(const void *)(scratch + 3 * k * rs)
                                          + lead,
                                      rs, o + k);
                    }
                }
            }
        }
    }
}
#endif /* EQ_FAST */

#endif /* EQ_DEPTHWISE_STRIPS_H */
