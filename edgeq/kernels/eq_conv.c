/* edgeq kernels: CONV_2D (eq_conv2d, eq_conv2d_wide).
 *
 * Reference: reference_integer_ops::ConvPerChannel, one output value at a time over the
 * receptive field (taps in the padding skipped), grouped convolutions included; weights in
 * their stored order (row_words, weight_bits 16) are found through eq_conv_weight_at.
 * Fast path (EQ_FAST, one group, padded filter rows of at most EQ_GATHER_MAX values, a
 * scratch): a matrix product, EQ_COLS output pixels at a time, their receptive fields as int16
 * columns (eq_conv_columns.h) times every filter row (eq_conv_dot.h; eq_conv_hot.h for a
 * block's channels with the fast stages in assembly), the output stages
 * prepared once per channel in the scratch. A 3x3 filter over three channels (eq_conv2d_rgb)
 * walks the output rows: runs of blocks inside the image go straight to the assembly.
 * eq_conv2d_wide (int8 stored as int16 pairs) is a separate function so that the linker drops
 * its fast path from firmware without such weights.
 */
#include "eq_internal.h"
#include "eq_conv_columns.h"
#include "eq_conv_dot.h"
#include "eq_conv_hot.h"
#include "eq_conv_pw8.h"

#if EQ_FAST
/* One output channel of a block outside the hot case (a channel without the right-shift
 * formula, a clamp narrower than int8, fewer than EQ_COLS pixels). */
EQ_NOINLINE void eq_conv_channel(const eq_conv_t *p, const int16_t *cols, const eq_rqc_t *q,
                                 const int8_t *w, int8_t *dst, int32_t n, int32_t oc)
{
    const int32_t k_pad = p->filter_stride, stride = p->out_c;
    const int int4 = p->weight_bits == 4;
    const int32_t offset = p->out_offset, lo = p->act_min, hi = p->act_max;
    const int32_t kind = EQ_RQ_KIND(*q), amount = EQ_RQ_AMOUNT(*q);
    int32_t a[EQ_COLS], j;
    if (kind == EQ_RQ_CONST) {
        for (j = 0; j < n; ++j) {
            dst[j * stride] = (int8_t)EQ_CLAMP(offset, lo, hi);
        }
        return;
    }
    for (j = 0; j < EQ_COLS; ++j) {
        a[j] = 0;
    }
    if (int4) {
        if (n <= 3) {
            eq_dot3_int4(cols, w, k_pad / 8, a);
        } else {
            eq_dot6_int4(cols, w, k_pad / 8, a);
        }
        for (j = 0; j < EQ_COLS; ++j) {
            a[j] >>= 4; /* exact: the sums are multiples of 16 */
        }
    } else if (p->weight_bits == 16) {
        eq_dot_wide(cols, w, k_pad / 4, a, n);
    } else if (n <= 3) {
        eq_dot3_int8(cols, w, k_pad / 4, a);
    } else {
        eq_dot6_int8(cols, w, k_pad / 4, a);
    }
    for (j = 0; j < n; ++j) {
        /* TFLM's order: the sum, then the bias (wrapping like its int32 arithmetic) */
        const int32_t acc = (int32_t)((uint32_t)a[j] + (uint32_t)q->bias);
        int32_t v;
        if (kind == EQ_RQ_RIGHT || kind == EQ_RQ_FOLDED) {
            v = eq_rq_right(acc, q->m2, q->add, amount) + (kind == EQ_RQ_RIGHT ? offset : 0);
            v = EQ_CLAMP(v, lo, hi);
        } else if (kind == EQ_RQ_LEFT) {
            v = EQ_CLAMP(eq_rq_left(acc, q->m2, q->add, amount), lo, hi);
        } else {
            const eq_out_t o = {p->multiplier, p->shift, offset, lo, hi};
            v = eq_rq_output(eq_rq_prepare(p->multiplier[oc], p->shift[oc]), o, acc);
        }
        dst[j * stride] = (int8_t)v;
    }
}

/* One EQ_RQ_FOLDED channel of an int8 block of EQ_COLS pixels in one piece: accumulators from
 * the bias, the dot product, the output stage and the six stores. The block's constants come in
 * through memory operands, so that the dot product has the whole register file. Returns the
 * weights of the next channel. */
/* The block's state for eq_conv_folded_int8, read by the assembly from memory. */
typedef struct {
    const eq_rqc_t *q;
    int8_t *dst;
    const int8_t *w;
    const int16_t *cols;
    int32_t runs, stride;
} eq_blk_t;

#if EQ_ASM
#define EQ_RQ_FOLD(A, OFF, STORE)                             \
    "add     %[w13], %[" A "], %[x02]\n\t"                    \
    "add     %[w13], %[w13], %[" A "], asr #31\n\t"           \
    "smmlar  %[w13], %[" A "], %[cnt], %[w13]\n\t"            \
    "asr     %[w13], %[w13], %[x13]\n\t"                      \
    OFF                                                       \
    "ssat    %[w13], #8, %[w13]\n\t"                          \
    STORE "\n\t"
/* One EQ_RQ_FOLDED channel of an int8 block of EQ_COLS pixels in one piece: accumulators from
 * the bias, the dot product, the output stage and the six stores. The block's state comes in
 * through memory operands (S, an eq_blk_t lvalue) so that the dot product has the whole
 * register file; W (the weights) moves on to the next channel. */
/* The output stage of the six accumulators: m2 in cnt, the rounding term in x02, r in x13,
 * the stride in col, the destination in w02, the value in w13; the offset (EQ_RQ_RIGHT) in w. */
#define EQ_STAGE6(OFF)                                                                      \
            "ldr     %[col], %[qm]\n\t"                                                     \
            "ldrd    %[cnt], %[x02], [%[col], #4]\n\t"                                      \
            "ldrb    %[x13], [%[col], #13]\n\t"                                             \
            "ldrsh   %[w], [%[col], #14]\n\t"                                               \
            "ldr     %[col], %[sm]\n\t"                                                     \
            "ldr     %[w02], %[dm]\n\t"                                                     \
            EQ_RQ_FOLD("a0", OFF, "strb    %[w13], [%[w02]]")                               \
            EQ_RQ_FOLD("a1", OFF, "strb    %[w13], [%[w02], %[col]]")                       \
            "add     %[w02], %[w02], %[col], lsl #1\n\t"                                    \
            EQ_RQ_FOLD("a2", OFF, "strb    %[w13], [%[w02]]")                               \
            EQ_RQ_FOLD("a3", OFF, "strb    %[w13], [%[w02], %[col]]")                       \
            "add     %[w02], %[w02], %[col], lsl #1\n\t"                                    \
            EQ_RQ_FOLD("a4", OFF, "strb    %[w13], [%[w02]]")                               \
            EQ_RQ_FOLD("a5", OFF, "strb    %[w13], [%[w02], %[col]]")
#define EQ_STAGE_OFF "add     %[w13], %[w13], %[w]\n\t"
#define EQ_CONV_DOT(S, STAGE, FIRST, RUN)                                                   \
    do {                                                                                    \
        int32_t a0, a1, a2, a3, a4, a5;                                                     \
        uint32_t col, wr_, cnt, x02, x13, w02, w13;                                         \
        __asm volatile(                                                                     \
            "ldr     %[col], %[qm]\n\t"                                                     \
            "ldr     %[a5], [%[col]]\n\t"                                                   \
            "ldr     %[col], %[colsm]\n\t"                                                  \
            "ldr     %[cnt], %[runsm]\n\t"                                                  \
            "ldr     %[w], %[wm]\n\t"                                                       \
            FIRST                                                                           \
            "subs    %[cnt], %[cnt], #1\n\t"                                                \
            "tst     %[cnt], #1\n\t"                                                        \
            "beq     2f\n\t"                                                                \
            RUN                                                                             \
            "2:\n\t"                                                                        \
            "tst     %[cnt], #2\n\t"                                                        \
            "beq     4f\n\t"                                                                \
            RUN                                                                             \
            RUN                                                                             \
            "4:\n\t"                                                                        \
            "lsrs    %[cnt], %[cnt], #2\n\t"                                                \
            "beq     3f\n\t"                                                                \
            "1:\n\t"                                                                        \
            RUN                                                                             \
            RUN                                                                             \
            RUN                                                                             \
            RUN                                                                             \
            "subs    %[cnt], %[cnt], #1\n\t"                                                \
            "bne     1b\n\t"                                                                \
            "3:\n\t"                                                                        \
            "str     %[w], %[wm]\n\t"                                                       \
            STAGE                                                                           \
            : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3),               \
              [a4] "=&r"(a4), [a5] "=&r"(a5), [col] "=&r"(col), [w] "=&r"(wr_),                \
              [cnt] "=&r"(cnt), [x02] "=&r"(x02), [x13] "=&r"(x13), [w02] "=&r"(w02),       \
              [w13] "=&r"(w13)                                                              \
              , [wm] "+m"((S).w)                                                            \
            : [qm] "m"((S).q), [colsm] "m"((S).cols), [runsm] "m"((S).runs),                \
              [sm] "m"((S).stride), [dm] "m"((S).dst)                                       \
            : "cc", "memory");                                                              \
    } while (0)
#define EQ_CONV_INT8(S, STAGE) EQ_CONV_DOT(S, STAGE, EQ_DOT8_FIRST, EQ_DOT8_RUN)
#define EQ_CONV_WIDE(S, STAGE) EQ_CONV_DOT(S, STAGE, EQ_DOT16_FIRST, EQ_DOT16_RUN)
#else
#define EQ_CONV_INT8(S, STAGE)                                                              \
    do {                                                                                    \
        int32_t a_[EQ_COLS];                                                                \
        a_[0] = a_[1] = a_[2] = a_[3] = a_[4] = a_[5] = (S).q->bias;                        \
        eq_dot6_int8((S).cols, (S).w, (S).runs, a_);                                        \
        if (EQ_RQ_KIND(*(S).q) == EQ_RQ_FOLDED) {                                           \
            eq_rq6_folded_strided(a_, (S).q, (S).dst, (S).stride);                          \
        } else {                                                                            \
            eq_rq6_right_strided(a_, (S).q, (S).dst, (S).stride);                           \
        }                                                                                   \
        (S).w += 4 * (S).runs;                                                              \
    } while (0)
#define EQ_CONV_WIDE(S, STAGE)                                                              \
    do {                                                                                    \
        int32_t a_[EQ_COLS];                                                                \
        a_[0] = a_[1] = a_[2] = a_[3] = a_[4] = a_[5] = (S).q->bias;                        \
        eq_dot_wide((S).cols, (S).w, (S).runs, a_, EQ_COLS);                                \
        if (EQ_RQ_KIND(*(S).q) == EQ_RQ_FOLDED) {                                           \
            eq_rq6_folded_strided(a_, (S).q, (S).dst, (S).stride);                          \
        } else {                                                                            \
            eq_rq6_right_strided(a_, (S).q, (S).dst, (S).stride);                           \
        }                                                                                   \
        (S).w += 8 * (S).runs;                                                              \
    } while (0)
#endif

/* Every output channel for the block's n pixels (columns in `cols`), written to dst[0..) with
 * out_c between pixels; `folded` when every channel's stage is EQ_RQ_FOLDED. The hot loop
 * (EQ_COLS pixels, whole int8 clamp) keeps few values live so that the compiler holds them in
 * registers around the inline assembly. */
typedef void (*eq_block_fn)(const eq_conv_t *p, const int16_t *cols, const eq_rqc_t *rq,
                            int8_t *dst, int32_t n, int folded);

/* wide (a constant where inlined): weight_bits 16, in eq_conv_block_wide only, so that the
 * linker drops that code from firmware without such weights. */
EQ_INLINE void eq_conv_block_any(const eq_conv_t *p, const int16_t *cols, const eq_rqc_t *rq,
                                 int8_t *dst, int32_t n, int folded, const int wide)
{
    const int32_t out_c = p->out_c, k_pad = p->filter_stride;
    const int int4 = p->weight_bits == 4;
    const int32_t w_step = int4 ? k_pad / 2 : wide ? 2 * k_pad : k_pad;
    const int8_t *w = p->weights;
    const eq_rqc_t *end = rq + out_c;
    eq_blk_t blk;
    blk.q = rq;
    blk.dst = dst;
    blk.cols = cols;
    blk.runs = int4 ? k_pad / 8 : k_pad / 4;
    blk.stride = out_c;
    (void)folded; /* only the assembly has a loop for it */
#if EQ_ASM
    if ((n == EQ_COLS || (n <= 3 && !wide)) && p->act_min == -128 && p->act_max == 127
        && !int4) {
        /* runs of hot channels in eq_conv6_hot (eq_conv6_hot_wide, eq_conv3_hot for n <= 3),
         * the others one by one */
        eq_conv6_t s;
        s.q = rq;
        s.end = end;
        s.dst = dst;
        s.w = p->weights;
        s.cols = cols;
        s.runs = blk.runs;
        s.stride = out_c;
        s.n = n;
        if (folded && !wide && n == EQ_COLS) {
            eq_conv6_hot_folded(&s); /* every channel, no kind tests */
            return;
        }
        for (;;) {
            if (wide && s.runs == 7) {
                eq_conv6_r7_wide(&s);
            } else if (wide) {
                eq_conv6_hot_wide(&s);
            } else if (n == EQ_COLS) {
                eq_conv6_hot(&s);
            } else {
                eq_conv3_hot(&s);
            }
            if (s.q == end) {
                return;
            }
            eq_conv_channel(p, cols, s.q, s.w, s.dst, n, (int32_t)(s.q - rq));
            ++s.q;
            ++s.dst;
            s.w += w_step;
        }
    }
#endif
    if (n == EQ_COLS && p->act_min == -128 && p->act_max == 127 && !int4) {
        blk.w = p->weights;
        while (blk.q < end) {
            const int32_t kind = EQ_RQ_KIND(*blk.q);
            if (wide && kind == EQ_RQ_FOLDED) {
                EQ_CONV_WIDE(blk, EQ_STAGE6(""));
            } else if (wide && kind == EQ_RQ_RIGHT) {
                EQ_CONV_WIDE(blk, EQ_STAGE6(EQ_STAGE_OFF));
            } else if (kind == EQ_RQ_FOLDED) {
                EQ_CONV_INT8(blk, EQ_STAGE6("")); /* moves blk.w to the next channel */
            } else if (kind == EQ_RQ_RIGHT) {
                EQ_CONV_INT8(blk, EQ_STAGE6(EQ_STAGE_OFF));
            } else {
                eq_conv_channel(p, cols, blk.q, blk.w, blk.dst, n, (int32_t)(blk.q - rq));
                blk.w += w_step;
            }
            ++blk.q;
            ++blk.dst;
        }
        return;
    }
    if (n == EQ_COLS && p->act_min == -128 && p->act_max == 127) { /* int4 */
        const eq_rqc_t *q = rq;
        for (; q < end; ++q, w += w_step, ++dst) {
            const int32_t kind = EQ_RQ_KIND(*q);
            int32_t a[EQ_COLS];
            if (kind != EQ_RQ_FOLDED && kind != EQ_RQ_RIGHT) {
                eq_conv_channel(p, cols, q, w, dst, n, (int32_t)(q - rq));
                continue;
            }
            a[0] = a[1] = a[2] = a[3] = a[4] = a[5] = 0;
            eq_dot6_int4(cols, w, blk.runs, a);
            a[0] = q->bias + (a[0] >> 4); /* exact: the sums are multiples of 16 */
            a[1] = q->bias + (a[1] >> 4);
            a[2] = q->bias + (a[2] >> 4);
            a[3] = q->bias + (a[3] >> 4);
            a[4] = q->bias + (a[4] >> 4);
            a[5] = q->bias + (a[5] >> 4);
            if (kind == EQ_RQ_FOLDED) {
                eq_rq6_folded_strided(a, q, dst, out_c);
            } else {
                eq_rq6_right_strided(a, q, dst, out_c);
            }
        }
        return;
    }
    for (; blk.q < end; ++blk.q, w += w_step, ++blk.dst) {
        eq_conv_channel(p, cols, blk.q, w, blk.dst, n, (int32_t)(blk.q - rq));
    }
}

static void eq_conv_block(const eq_conv_t *p, const int16_t *cols, const eq_rqc_t *rq,
                          int8_t *dst, int32_t n, int folded)
{
    eq_conv_block_any(p, cols, rq, dst, n, folded, 0);
}

static void eq_conv_block_wide(const eq_conv_t *p, const int16_t *cols, const eq_rqc_t *rq,
                               int8_t *dst, int32_t n, int folded)
{
    eq_conv_block_any(p, cols, rq, dst, n, folded, 1);
}

/* eq_conv2d_fast's blocks for eq_rgb_lines filters: a block of six pixels in one output row
 * whose first window lies inside the image takes eq_columns_rgb3x3 (the windows over the right
 * border gathered), the others eq_columns_lines; with int16 weights and every channel's stage
 * hot a block of six goes to eq_conv6_r7_folded or eq_conv6_r7_wide straight away. */
EQ_NOINLINE void eq_conv2d_rgb(const eq_conv_t *p, const int8_t *image, int8_t *out,
                               int16_t *cols, const eq_rqc_t *rq, int8_t *tmp, uint32_t off2,
                               eq_block_fn block, int all_folded)
{
    const int32_t out_w = p->out_w, pixels = p->out_h * out_w, depth = p->in_c;
    const int32_t step = p->in_w * depth * p->dilation_h, pixel_step = p->stride_w * depth;
    const int32_t y_last = p->in_h - 1 - 2 * p->dilation_h, x_last = p->in_w - p->filter_w;
    /* the last window start with the block's six windows inside the image */
    const int32_t x_full = x_last - (EQ_COLS - 1) * p->stride_w;
    int32_t pix, oy = 0, ox = 0, in_y0 = -p->pad_h, in_x0 = -p->pad_w;
    int row_in = in_y0 >= 0 && in_y0 <= y_last;
#if EQ_ASM
    void (*hot)(eq_conv6_t *) = NULL;
    int32_t oc, folded = 0, right = 0;
    eq_conv6_t s;
    for (oc = 0; oc < p->out_c; ++oc) {
        folded += EQ_RQ_KIND(rq[oc]) == EQ_RQ_FOLDED;
        right += EQ_RQ_KIND(rq[oc]) == EQ_RQ_RIGHT;
    }
    if (p->weight_bits == 16 && p->act_min == -128 && p->act_max == 127) {
        hot = folded == p->out_c ? eq_conv6_r7_folded
              : folded + right == p->out_c ? eq_conv6_r7_wide : NULL;
    }
    s.end = rq + p->out_c;
    s.cols = cols;
    s.runs = 7;
    s.stride = p->out_c;
    s.n = EQ_COLS;
#endif
    for (pix = 0; pix < pixels;) {
        const int32_t n = EQ_MIN(EQ_COLS, pixels - pix);
        int8_t *dst = out + pix * p->out_c;
        if (ox >= out_w) { /* the next output row */
            for (; ox >= out_w; ox -= out_w) {
                ++oy;
            }
            in_y0 = oy * p->stride_h - p->pad_h;
            in_x0 = ox * p->stride_w - p->pad_w;
            row_in = in_y0 >= 0 && in_y0 <= y_last;
            continue;
        }
#if EQ_ASM
        if (hot != NULL && row_in && in_x0 >= 0 && in_x0 <= x_full && n == EQ_COLS
            && ox + EQ_COLS <= out_w) {
            /* blocks of six windows inside the image one after another, few values live */
            const int8_t *src = image + (in_y0 * p->in_w + in_x0) * depth;
            const int32_t block_step = EQ_COLS * pixel_step, out_step = EQ_COLS * p->out_c;
            do {
                eq_columns_rgb3x3(src, step, pixel_step, cols, 0, EQ_COLS, off2);
                s.q = rq;
                s.dst = dst;
                s.w = p->weights;
                hot(&s);
                src += block_step;
                dst += out_step;
                pix += EQ_COLS;
                ox += EQ_COLS;
                in_x0 += EQ_COLS * p->stride_w;
            } while (pixels - pix >= EQ_COLS && ox + EQ_COLS <= out_w && in_x0 <= x_full);
            continue;
        }
#endif
        if (row_in && n == EQ_COLS && ox + EQ_COLS <= out_w && in_x0 >= 0 && in_x0 <= x_last) {
            /* in one output row, the windows inside the image first (k), then those over the
             * right border */
            const int32_t k = in_x0 <= x_full ? EQ_COLS : (x_last - in_x0) / p->stride_w + 1;
            int32_t j;
            eq_columns_rgb3x3(image + (in_y0 * p->in_w + in_x0) * depth, step, pixel_step, cols,
                              0, k, off2);
            for (j = k; j < EQ_COLS; ++j) {
                eq_columns_rgb3x3(eq_gather_rgb(p, image, oy, ox + j, tmp), 9, 0, cols, j, 1,
                                  off2);
            }
        } else {
            eq_columns_lines(p, image, pix, n, cols, tmp, off2);
        }
#if EQ_ASM
        if (hot != NULL && n == EQ_COLS) {
            s.q = rq;
            s.dst = dst;
            s.w = p->weights;
            hot(&s);
        } else
#endif
        {
            block(p, cols, rq, dst, n, all_folded);
        }
        pix += EQ_COLS;
        ox += EQ_COLS;
        in_x0 += EQ_COLS * p->stride_w;
    }
}

/* CONV_2D, one group, filter rows of at most EQ_GATHER_MAX values padded to a whole number of
 * runs (filter_stride); scratch as described above. */
static void eq_conv2d_fast(const eq_conv_t *p, const int8_t *in, int8_t *out, int16_t *cols,
                           eq_block_fn block)
{
    const int32_t k_pad = p->filter_stride;
    const int32_t k_total = p->filter_h * p->filter_w * p->in_c;
    const int32_t run = p->weight_bits == 4 ? 8 : 4;
    const int32_t pixels = p->out_h * p->out_w;
    const int32_t out_c = p->out_c;
    const uint32_t off2 = ((uint32_t)p->in_offset & 0xFFFFu) << 16
                          | ((uint32_t)p->in_offset & 0xFFFFu);
    /* 1x1 without padding: a pixel's receptive field is the input pixel itself */
    const int direct = p->filter_h == 1 && p->filter_w == 1 && p->pad_h == 0 && p->pad_w == 0
                       && k_total == k_pad;
    const int dense = direct && p->stride_h == 1 && p->stride_w == 1; /* and stride 1 */
    eq_rqc_t *rq = (eq_rqc_t *)(void *)(cols + EQ_COLS * k_pad);
    uint32_t tmp_words[EQ_GATHER_MAX / 4 + 1]; /* + 1: the gather's last word may run over */
    int8_t *tmp = (int8_t *)tmp_words;
    int32_t b, pix, oc, j;
    int folded = 1;
    for (oc = 0; oc < out_c; ++oc) {
        rq[oc] = eq_rqc_make(p->multiplier[oc], p->shift[oc], p->bias ? p->bias[oc] : 0,
                             p->out_offset);
        folded = folded && EQ_RQ_KIND(rq[oc]) == EQ_RQ_FOLDED;
    }
    memset(tmp + k_total, -p->in_offset, (size_t)(k_pad - k_total)); /* times zero weights */
    for (b = 0; b < p->batches; ++b) {
        const int8_t *image = in + b * p->in_h * p->in_w * p->in_c;
        int8_t *dst = out + b * pixels * out_c;
        if (p->row_words > 0 && eq_rgb_lines(p)) {
            eq_conv2d_rgb(p, image, dst, cols, rq, tmp, off2, block, folded);
            continue;
        }
        for (pix = 0; pix < pixels; pix += EQ_COLS) {
            const int32_t n = EQ_MIN(EQ_COLS, pixels - pix);
            if (p->row_words > 0) {
                eq_columns_lines(p, image, pix, n, cols, tmp, off2);
            }
            for (j = 0; j < EQ_COLS && p->row_words == 0; ++j) {
                /* missing pixels repeat the last one */
                const int32_t q = pix + EQ_MIN(j, n - 1);
                const int8_t *src = dense ? image + q * k_pad /* input pixel q */
                    : direct
                    ? image + (q / p->out_w * p->stride_h * p->in_w + q % p->out_w * p->stride_w)
                              * p->in_c
                    : eq_gather(p, image, 0, q / p->out_w, q % p->out_w, tmp);
                eq_column(src, cols, j, run, k_pad, off2);
            }
            block(p, cols, rq, dst + pix * out_c, n, folded);
        }
    }
}
#endif /* EQ_FAST */

/* ---- CONV_2D: reference_integer_ops::ConvPerChannel ----------------------------------- */

/* Where tap (fy, fx, ic) of a filter row is stored (see row_words). */
static int32_t eq_conv_weight_at(const eq_conv_t *p, int32_t fy, int32_t fx, int32_t ic)
{
    const int32_t line = p->filter_w * p->filter_in_c, t = fx * p->filter_in_c + ic;
    const int32_t head = 4 * p->row_words;
    if (p->row_words <= 0) {
        return fy * line + t;
    }
    return t < head ? fy * head + t : p->filter_h * head + fy * (line - head) + (t - head);
}

/* ConvPerChannel for weights in an order of their own (row_words, weight_bits 16): one
 * group, each weight found through eq_conv_weight_at. */
static void eq_conv2d_stored_order(const eq_conv_t *p, const int8_t *in, int8_t *out)
{
    int32_t b, oy, ox, oc, fy, fx, ic;
    for (b = 0; b < p->batches; ++b) {
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                for (oc = 0; oc < p->out_c; ++oc) {
                    int32_t acc = 0;
                    for (fy = 0; fy < p->filter_h; ++fy) {
                        const int32_t iy = oy * p->stride_h - p->pad_h + p->dilation_h * fy;
                        for (fx = 0; fx < p->filter_w && iy >= 0 && iy < p->in_h; ++fx) {
                            const int32_t ix = ox * p->stride_w - p->pad_w + p->dilation_w * fx;
                            const int8_t *ip;
                            if (ix < 0 || ix >= p->in_w) {
                                continue;
                            }
                            ip = in + ((b * p->in_h + iy) * p->in_w + ix) * p->in_c;
                            for (ic = 0; ic < p->in_c; ++ic) {
                                const int32_t at = oc * p->filter_stride
                                                   + eq_conv_weight_at(p, fy, fx, ic);
                                acc += eq_weight_any(p->weights, at, p->weight_bits)
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

void eq_conv2d(const eq_conv_t *p, const int8_t *in, int8_t *out, int16_t *scratch)
{
    const int32_t groups = p->in_c / p->filter_in_c;
    const int32_t filters_per_group = p->out_c / groups;
    int32_t b, oy, ox, oc, fy, fx, ic;
#if EQ_FAST
    if (scratch != NULL && eq_conv1x1_in8_applies(p)
        && eq_conv1x1_in8(p, in, out, (uint32_t *)(void *)scratch)) {
        return;
    }
    if (scratch != NULL && groups == 1 && p->filter_stride % (p->weight_bits == 4 ? 8 : 4) == 0
        && p->filter_stride <= EQ_GATHER_MAX
        && (p->weight_bits == 8 || p->weight_bits == 4)) { /* 2/3 bits: eq_conv2d_packed */
        eq_conv2d_fast(p, in, out, scratch, eq_conv_block);
        return;
    }
#else
    (void)scratch;
#endif
    if (p->row_words > 0 || p->weight_bits == 16) {
        eq_conv2d_stored_order(p, in, out);
        return;
    }
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
                            wi = oc * p->filter_stride + (fy * p->filter_w + fx) * p->filter_in_c;
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

void eq_conv2d_wide(const eq_conv_t *p, const int8_t *in, int8_t *out, int16_t *scratch)
{
#if EQ_FAST
    if (scratch != NULL && p->filter_in_c == p->in_c && p->filter_stride % 4 == 0
        && p->filter_stride <= EQ_GATHER_MAX) {
        eq_conv2d_fast(p, in, out, scratch, eq_conv_block_wide);
        return;
    }
#else
    (void)scratch;
#endif
    eq_conv2d(p, in, out, NULL);
}
