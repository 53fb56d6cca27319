/* edgeq kernels, portable C99: bit-exact with TFLite Micro's reference int8 kernels.
 *
 * Part of edgeq (Apache-2.0). Written from the TFLite arithmetic specification (gemmlowp
 * fixed point, double-rounding requantization); each function names the TFLM kernel whose
 * results it reproduces. Integer overflow is avoided with unsigned arithmetic where TFLM
 * relies on two's complement wrapping, so the code is clean under UBSan.
 */
#include "edgeq_kernels.h"

#include <string.h>

#if defined(__GNUC__)
#define EQ_INLINE static inline __attribute__((always_inline))
#define EQ_NOINLINE static __attribute__((noinline))
#else
#define EQ_INLINE static inline
#define EQ_NOINLINE static
#endif

#define EQ_MIN(a, b) ((a) < (b) ? (a) : (b))
#define EQ_MAX(a, b) ((a) > (b) ? (a) : (b))
#define EQ_CLAMP(x, lo, hi) EQ_MIN(EQ_MAX((x), (lo)), (hi))

/* ---- fixed point (gemmlowp) ------------------------------------------------------------ */

static int32_t eq_srdhm(int32_t a, int32_t b) /* SaturatingRoundingDoublingHighMul */
{
    int64_t ab, nudge;
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    ab = (int64_t)a * (int64_t)b;
    nudge = ab >= 0 ? (int64_t)(1 << 30) : (int64_t)(1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

static int32_t eq_rdbpot(int32_t x, int32_t exponent) /* RoundingDivideByPOT */
{
    const int32_t mask = (int32_t)(((uint32_t)1 << exponent) - 1u);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

static int32_t eq_shl(int32_t x, int32_t n) /* x * 2^n, wrapping like TFLM's int32 math */
{
    return (int32_t)((uint32_t)x << n);
}

int32_t eq_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return eq_rdbpot(eq_srdhm(eq_shl(x, left), multiplier), right);
}

#define eq_mbqm eq_multiply_by_quantized_multiplier

/* A weight, int8 or int4 (two per byte, first in the low nibble). */
static int32_t eq_weight(const int8_t *w, int32_t i, int32_t bits)
{
    if (bits == 4) {
        const uint8_t b = (uint8_t)w[i >> 1];
        const int32_t nibble = (i & 1) ? (int32_t)(b >> 4) : (int32_t)(b & 0x0F);
        return nibble >= 8 ? nibble - 16 : nibble;
    }
    return w[i];
}

/* The same, or weight_bits 16: run r of four values stored as (v0 v2) (v1 v3), that is int16
 * 4r + 0, 2, 1, 3. */
static int32_t eq_weight_any(const int8_t *w, int32_t i, int32_t bits)
{
    if (bits == 16) {
        const int32_t j = i & 3;
        int16_t v;
        memcpy(&v, w + 2 * ((i & ~3) + ((j & 1) << 1) + (j >> 1)), sizeof v);
        return v;
    }
    return eq_weight(w, i, bits);
}

/* ---- fast paths (Armv7E-M DSP extension) --------------------------------------------------- */

#if !defined(EDGEQ_PORTABLE) && (defined(__ARM_FEATURE_DSP) || defined(EDGEQ_FAST_EMULATED))
#define EQ_FAST 1
#else
#define EQ_FAST 0
#endif

#if EQ_FAST
/* the low and high 16-bit halves of a word, sign-extended */
EQ_INLINE int32_t eq_lo16(uint32_t x) { return (int32_t)(int16_t)(uint16_t)(x & 0xFFFFu); }
EQ_INLINE int32_t eq_hi16(uint32_t x) { return (int32_t)(int16_t)(uint16_t)(x >> 16); }

#if defined(__ARM_FEATURE_DSP) && !defined(EDGEQ_FAST_EMULATED)
#include <arm_acle.h>
#define EQ_SXTB16(x) ((uint32_t)__sxtb16(x))
#define EQ_SXTAB16(a, x) ((uint32_t)__sxtab16((a), (x)))
/* The rotation is part of the instruction; ACLE of GCC 12 has no __ror to express it. */
static inline uint32_t EQ_SXTB16_ROR8(uint32_t x)
{
    uint32_t r;
    __asm("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
static inline uint32_t EQ_SXTAB16_ROR8(uint32_t a, uint32_t x)
{
    uint32_t r;
    __asm("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}
#define EQ_SMLAD(a, b, acc) __smlad((a), (b), (acc))
#define EQ_SMLABB(a, b, acc) __smlabb((int32_t)(a), (int32_t)(b), (acc))
#define EQ_SMLATT(a, b, acc) __smlatt((int32_t)(a), (int32_t)(b), (acc))
#else
/* The same instructions in C, for testing the fast paths on any host. */
static uint32_t eq_pack16(int32_t lo, int32_t hi)
{
    return ((uint32_t)lo & 0xFFFFu) | (((uint32_t)hi & 0xFFFFu) << 16);
}
static uint32_t EQ_SXTB16(uint32_t x)
{
    return eq_pack16((int8_t)(uint8_t)(x & 0xFFu), (int8_t)(uint8_t)((x >> 16) & 0xFFu));
}
static uint32_t EQ_SXTB16_ROR8(uint32_t x) { return EQ_SXTB16((x >> 8) | (x << 24)); }
static uint32_t EQ_SXTAB16(uint32_t a, uint32_t x)
{
    const uint32_t e = EQ_SXTB16(x);
    return eq_pack16(eq_lo16(a) + eq_lo16(e), eq_hi16(a) + eq_hi16(e));
}
static uint32_t EQ_SXTAB16_ROR8(uint32_t a, uint32_t x)
{
    return EQ_SXTAB16(a, (x >> 8) | (x << 24));
}
static int32_t EQ_SMLAD(uint32_t a, uint32_t b, int32_t acc)
{
    return acc + eq_lo16(a) * eq_lo16(b) + eq_hi16(a) * eq_hi16(b);
}
static int32_t EQ_SMLABB(uint32_t a, uint32_t b, int32_t acc)
{
    return acc + eq_lo16(a) * eq_lo16(b);
}
static int32_t EQ_SMLATT(uint32_t a, uint32_t b, int32_t acc)
{
    return acc + eq_hi16(a) * eq_hi16(b);
}
#endif

/* The inner loops in inline assembly: they use up to 13 registers, which needs the frame
 * pointer free (any -O level but -O0; define EDGEQ_NO_ASM when building with
 * -fno-omit-frame-pointer). Without them the same fast paths run as C with the DSP intrinsics. */
#if defined(__ARM_FEATURE_DSP) && !defined(EDGEQ_FAST_EMULATED) && defined(__OPTIMIZE__) \
    && !defined(EDGEQ_NO_ASM)
#define EQ_ASM 1
#else
#define EQ_ASM 0
#endif

static uint32_t eq_pair16(int32_t lo, int32_t hi) /* two 16-bit values in a word */
{
    return ((uint32_t)lo & 0xFFFFu) | (((uint32_t)hi & 0xFFFFu) << 16);
}

static uint32_t eq_load32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v); /* one LDR on Cortex-M7/M4, which allow unaligned words */
    return v;
}

/* The output stage's parameters, copied out of the (flash) parameter struct into locals: the
 * compiler must otherwise reload them after every int8 store, which may alias anything. */
typedef struct {
    const int32_t *multiplier;
    const int8_t *shift;
    int32_t offset, lo, hi;
} eq_out_t;

/* One channel's requantization, prepared once and applied to several accumulators:
 * (x * m + 2^30) >> 31 equals SaturatingRoundingDoublingHighMul for m > 0 (one SMLAL), and
 * (x >> r) + ((x & mask) > (mask >> 1) + (x < 0)) is RoundingDivideByPOT. */
typedef struct {
    int32_t multiplier, left, right, mask, half;
} eq_rq_t;

EQ_INLINE eq_rq_t eq_rq_prepare(int32_t multiplier, int32_t shift)
{
    eq_rq_t r;
    r.multiplier = multiplier;
    r.left = shift > 0 ? shift : 0;
    r.right = shift > 0 ? 0 : -shift;
    r.mask = (int32_t)(((uint32_t)1 << r.right) - 1u);
    r.half = r.mask >> 1;
    return r;
}

EQ_INLINE int8_t eq_rq_output(eq_rq_t r, eq_out_t o, int32_t acc)
{
    const int32_t high = (int32_t)(((int64_t)eq_shl(acc, r.left) * r.multiplier
                                    + ((int64_t)1 << 30)) >> 31);
    int32_t v = (high >> r.right) + ((high & r.mask) > r.half + (high < 0 ? 1 : 0) ? 1 : 0);
    v += o.offset;
    v = v < o.lo ? o.lo : v;
    return (int8_t)(v > o.hi ? o.hi : v);
}

EQ_INLINE int8_t eq_output(eq_out_t o, int32_t acc, int32_t channel)
{
    return eq_rq_output(eq_rq_prepare(o.multiplier[channel], o.shift[channel]), o, acc);
}

/* ---- exact requantization in a few instructions --------------------------------------------
 *
 * TFLM's output stage is v = RoundingDivideByPOT(SRDHM(acc << l, M), r) + offset, clamped, with
 * l = max(shift, 0) and r = max(-shift, 0). For a channel with M in [2^30, 2^31) (what
 * QuantizeMultiplier gives, besides 0) it equals, exactly,
 *   r >= 1 (l = 0):  v = (SMMLAR(acc, M2, acc + 2^(r-1) + (acc >> 31)) >> r) + offset
 *   r = 0:           v = SMMLAR(x, M2, x + offset), x = acc << l
 * where M2 = 2M - 2^32 (2M as a 32-bit word) and SMMLAR(a, b, c) = (c * 2^32 + a * b + 2^31) >> 32,
 * all shifts arithmetic (floor). Proof:
 * - a * M2 = 2aM - a * 2^32, so SMMLAR(a, M2, a + k) = ((2aM + 2^31) >> 32) + k
 *   = ((aM + 2^30) >> 31) + k.
 * - (aM + 2^30) >> 31 is SRDHM(a, M) for M > 0: for aM >= 0 SRDHM truncates (aM + 2^30) / 2^31,
 *   the same floor; for aM < 0 it truncates (aM + 1 - 2^30) / 2^31 toward zero, which is
 *   ceil((aM + 1 - 2^30) / 2^31) = floor((aM + 2^30) / 2^31).
 * - RoundingDivideByPOT(s, r), r >= 1, rounds half away from zero: (s + 2^(r-1) - (s < 0)) >> r.
 *   s < 0 implies acc < 0; acc < 0 with s >= 0 means -2^30 <= aM < 0, so s = 0, and
 *   (0 + 2^(r-1) - 1) >> r = 0 as well: -(acc < 0) = (acc >> 31) may stand for -(s < 0).
 * - Adding an integer k before a floor division by 2^32 adds k after it, and
 *   floor(floor(y) / 2^r) = floor(y / 2^r); the hardware works modulo 2^32, which is exact
 *   when the true results fit int32. The bias bounds below make sure they do: filters have at
 *   most 512 values (|sum| < 2^24), so for r >= 1, r <= 30 and |bias| < 2^31 - 2^29 - 2^25,
 *   |SRDHM| <= |acc| < 2^31 - 2^29 - 2^24 and |SRDHM + 2^(r-1)| < 2^31; for r = 0, l <= 4 and
 *   |bias| < 2^(28 - l), |x| < 2^29.
 * - M = 0 gives SRDHM = 0, so v = offset whatever the accumulator: the dot product is skipped.
 * Other channels (a left shift above 4, r = 31, huge biases) take the general path. */

enum { EQ_RQ_GENERAL = 0, EQ_RQ_CONST = 1, EQ_RQ_RIGHT = 2, EQ_RQ_LEFT = 3, EQ_RQ_FOLDED = 4 };

/* One channel's output stage for the fast formulas. */
typedef struct {
    int32_t bias;
    int32_t m2;    /* 2M as a word */
    int32_t add;   /* right: 2^(r-1); left: the output offset */
    int32_t shift; /* bits 0-7: EQ_RQ_* kind, 8-15: r (right) or l (left), 16-31: output offset */
} eq_rqc_t;

#define EQ_RQ_KIND(rq) ((rq).shift & 0xFF)
#define EQ_RQ_AMOUNT(rq) (((rq).shift >> 8) & 0xFF)

static eq_rqc_t eq_rqc_make(int32_t multiplier, int32_t shift, int32_t bias, int32_t offset)
{
    const uint32_t magnitude = bias < 0 ? 0u - (uint32_t)bias : (uint32_t)bias;
    const uint32_t high = ((uint32_t)offset & 0xFFFFu) << 16;
    eq_rqc_t rq;
    rq.bias = bias;
    rq.m2 = (int32_t)((uint32_t)multiplier << 1);
    rq.add = 0;
    rq.shift = (int32_t)(high | EQ_RQ_GENERAL);
    if (multiplier == 0) {
        rq.shift = (int32_t)(high | EQ_RQ_CONST);
    } else if (multiplier >= (1 << 30)) {
        if (shift <= -1 && shift >= -22 && magnitude < (1u << 30)) {
            /* the offset folded into the rounding term: (s + 2^(r-1) - c + offset 2^r) >> r
             * is the shifted value plus the offset; |result| < 2^30 + 2^25 + 2^29 */
            rq.add = (int32_t)(((uint32_t)2 * (uint32_t)offset + 1u) << (-shift - 1));
            rq.shift = (int32_t)(high | (uint32_t)(-shift) << 8 | EQ_RQ_FOLDED);
        } else if (shift <= -1 && shift >= -30 && magnitude < 1577058304u) {
            /* 2^31 - 2^29 - 2^25 */
            rq.add = (int32_t)((uint32_t)1 << (-shift - 1));
            rq.shift = (int32_t)(high | (uint32_t)(-shift) << 8 | EQ_RQ_RIGHT);
        } else if (shift >= 0 && shift <= 4 && magnitude < ((uint32_t)1 << (28 - shift))) {
            rq.add = offset;
            rq.shift = (int32_t)(high | (uint32_t)shift << 8 | EQ_RQ_LEFT);
        }
    }
    return rq;
}

#if defined(__ARM_FEATURE_DSP) && !defined(EDGEQ_FAST_EMULATED)
EQ_INLINE int32_t eq_smmlar(int32_t a, int32_t b, int32_t c)
{
    int32_t r;
    __asm("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}
EQ_INLINE int32_t eq_sat8(int32_t v)
{
    return __ssat(v, 8);
}
#else
static int32_t eq_smmlar(int32_t a, int32_t b, int32_t c)
{
    const uint64_t sum = ((uint64_t)(uint32_t)c << 32) + (uint64_t)((int64_t)a * b)
                         + 0x80000000u;
    return (int32_t)(uint32_t)(sum >> 32);
}
static int32_t eq_sat8(int32_t v)
{
    return EQ_CLAMP(v, -128, 127);
}
#endif

/* r >= 1 (EQ_RQ_RIGHT), without the output offset */
EQ_INLINE int32_t eq_rq_right(int32_t acc, int32_t m2, int32_t half, int32_t r)
{
    return eq_smmlar(acc, m2, acc + half + (acc >> 31)) >> r;
}

/* r = 0 (EQ_RQ_LEFT), offset included (in `offset`) */
EQ_INLINE int32_t eq_rq_left(int32_t acc, int32_t m2, int32_t offset, int32_t l)
{
    const int32_t x = eq_shl(acc, l);
    return eq_smmlar(x, m2, x + offset);
}

/* Any of the three: r >= 1 has l = 0, sign = -1, add = 2^(r-1) and after = offset, or the
 * offset folded into add and after = 0; r = 0 has sign = 0, add = offset, after = 0. */
typedef struct {
    int32_t m2, add, right, left, sign, after;
} eq_rqu_t;

static eq_rqu_t eq_rqu_make(eq_rqc_t rq, int32_t offset)
{
    eq_rqu_t u;
    const int right = EQ_RQ_KIND(rq) == EQ_RQ_RIGHT || EQ_RQ_KIND(rq) == EQ_RQ_FOLDED;
    u.m2 = rq.m2;
    u.add = rq.add;
    u.right = right ? EQ_RQ_AMOUNT(rq) : 0;
    u.left = right ? 0 : EQ_RQ_AMOUNT(rq);
    u.sign = right ? -1 : 0;
    u.after = EQ_RQ_KIND(rq) == EQ_RQ_RIGHT ? offset : 0;
    return u;
}

EQ_INLINE int32_t eq_rqu_apply(const eq_rqu_t *u, int32_t acc)
{
    const int32_t x = eq_shl(acc, u->left);
    return (eq_smmlar(x, u->m2, x + u->add + ((x >> 31) & u->sign)) >> u->right) + u->after;
}

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
#define EQ_GATHER_MAX 512 /* padded filter rows up to this are gathered on the stack */

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
        for (k = 0; k + 8 <= k_pad; k += 8, d += 4 * EQ_COLS) { /* two runs per turn */
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

/* The EQ_COLS columns of the block of n pixels from pixel `pix`, for row_words > 0; missing
 * pixels repeat the last one. tmp: the gather buffer for pixels at the border. */
static void eq_columns_lines(const eq_conv_t *p, const int8_t *image, int32_t pix, int32_t n,
                             int16_t *cols, int8_t *tmp, uint32_t off2)
{
    const int32_t out_w = p->out_w, depth = p->in_c, fh = p->filter_h;
    const int32_t step = p->in_w * depth * p->dilation_h, line = p->filter_w * depth;
    const int32_t x_last = p->in_w - p->filter_w; /* last interior window start */
    const int32_t y_last = p->in_h - 1 - p->dilation_h * (fh - 1);
    const int rgb = fh == 3 && p->row_words == 2 && line == 9 && p->filter_stride == 28;
    int32_t oy = pix / out_w, ox = pix - oy * out_w, j;
    for (j = 0; j < EQ_COLS; ++j) {
        const int32_t in_y0 = oy * p->stride_h - p->pad_h;
        const int32_t in_x0 = ox * p->stride_w - p->pad_w;
        if (p->dilation_w == 1 && in_y0 >= 0 && in_x0 >= 0 && in_y0 <= y_last
            && in_x0 <= x_last) {
            const int8_t *src = image + (in_y0 * p->in_w + in_x0) * depth;
            if (rgb) {
                eq_column_rgb3x3(src, step, cols, j, off2);
            } else {
                eq_column_lines(p, src, step, cols, j, off2);
            }
        } else {
            eq_column_lines(p, eq_gather(p, image, 0, oy, ox, tmp), line, cols, j, off2);
        }
        if (j + 1 < n && ++ox == out_w) {
            ox = 0;
            ++oy;
        }
    }
}

/* Eight int4 weights (one word) as pairs of 16-bit values, each value times 16 (exact; divided
 * out after the sum): the low nibbles give (v0 v4) (v2 v6), the high ones (v1 v5) (v3 v7). */
#define EQ_INT4_LO(w) (((w) << 4) & 0xF0F0F0F0u)
#define EQ_INT4_HI(w) ((w) & 0xF0F0F0F0u)

#if EQ_ASM
#define EQ_DOT8_COL                                  \
    "ldrd    %[x02], %[x13], [%[col]], #8\n\t"
/* One run's two weight pairs (w02, w13) against the six columns, the first column already
 * loaded: accumulator aK starts from I_K (aK itself, or a5 holding the bias in a block's first
 * run). */
#define EQ_SMLAD2(ACC, INIT)                                      \
    "smlad   %[" #ACC "], %[x02], %[w02], %[" #INIT "]\n\t"       \
    "smlad   %[" #ACC "], %[x13], %[w13], %[" #ACC "]\n\t"
#define EQ_SIX_COLS(I0, I1, I2, I3, I4, I5)                                     \
    EQ_SMLAD2(a0, I0) EQ_DOT8_COL EQ_SMLAD2(a1, I1) EQ_DOT8_COL               \
    EQ_SMLAD2(a2, I2) EQ_DOT8_COL EQ_SMLAD2(a3, I3) EQ_DOT8_COL               \
    EQ_SMLAD2(a4, I4) EQ_DOT8_COL EQ_SMLAD2(a5, I5)
/* int8 weights: one word, sign-extended into the pairs (w0 w2) (w1 w3); the first column's
 * load sits between, hiding the load-use delay */
#define EQ_LOAD_W8                                   \
    "ldr     %[w13], [%[w]], #4\n\t"                 \
    EQ_DOT8_COL                                      \
    "sxtb16  %[w02], %[w13]\n\t"                     \
    "sxtb16  %[w13], %[w13], ror #8\n\t"
/* weights stored as int16 pairs (weight_bits 16): one LDRD */
#define EQ_LOAD_W16 "ldrd    %[w02], %[w13], [%[w]], #8\n\t" EQ_DOT8_COL
#define EQ_DOT8_RUN EQ_LOAD_W8 EQ_SIX_COLS(a0, a1, a2, a3, a4, a5)
#define EQ_DOT8_FIRST EQ_LOAD_W8 EQ_SIX_COLS(a5, a5, a5, a5, a5, a5)
#define EQ_DOT16_RUN EQ_LOAD_W16 EQ_SIX_COLS(a0, a1, a2, a3, a4, a5)
#define EQ_DOT16_FIRST EQ_LOAD_W16 EQ_SIX_COLS(a5, a5, a5, a5, a5, a5)
/* The rest of a run against three columns (a short block's tail), once the weight pairs and
 * the first column are loaded, and the loop's branch; the operands of those asm blocks. */
#define EQ_THREE_COLS_LOOP_TAIL                                         \
    EQ_SMLAD2(a0, a0) "ldrd    %[x02], %[x13], [%[col], #8]\n\t"        \
    EQ_SMLAD2(a1, a1) "ldrd    %[x02], %[x13], [%[col], #16]\n\t"       \
    EQ_SMLAD2(a2, a2)                                                   \
    "add     %[col], %[col], #48\n\t"                                   \
    "subs    %[runs], %[runs], #1\n\t"                                  \
    "bne     1b\n\t"
#define EQ_THREE_COLS_OPERANDS                                                              \
    [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [col] "+r"(col), [w] "+r"(w),               \
        [runs] "+r"(runs), [x02] "=&r"(x02), [x13] "=&r"(x13), [w02] "=&r"(w02),             \
        [w13] "=&r"(w13)
/* half a run of 8 int4 weights against the six columns: word pair OFF of each column's run */
#define EQ_DOT4_HALF(OFF)                                                  \
    "ldrd    %[x0], %[x1], [%[col], #" #OFF "]\n\t"                        \
    "smlad   %[a0], %[x0], %[pa], %[a0]\n\t"                               \
    "smlad   %[a0], %[x1], %[pb], %[a0]\n\t"                               \
    "ldrd    %[x0], %[x1], [%[col], #16+" #OFF "]\n\t"                     \
    "smlad   %[a1], %[x0], %[pa], %[a1]\n\t"                               \
    "smlad   %[a1], %[x1], %[pb], %[a1]\n\t"                               \
    "ldrd    %[x0], %[x1], [%[col], #32+" #OFF "]\n\t"                     \
    "smlad   %[a2], %[x0], %[pa], %[a2]\n\t"                               \
    "smlad   %[a2], %[x1], %[pb], %[a2]\n\t"                               \
    "ldrd    %[x0], %[x1], [%[col], #48+" #OFF "]\n\t"                     \
    "smlad   %[a3], %[x0], %[pa], %[a3]\n\t"                               \
    "smlad   %[a3], %[x1], %[pb], %[a3]\n\t"                               \
    "ldrd    %[x0], %[x1], [%[col], #64+" #OFF "]\n\t"                     \
    "smlad   %[a4], %[x0], %[pa], %[a4]\n\t"                               \
    "smlad   %[a4], %[x1], %[pb], %[a4]\n\t"                               \
    "ldrd    %[x0], %[x1], [%[col], #80+" #OFF "]\n\t"                     \
    "smlad   %[a5], %[x0], %[pa], %[a5]\n\t"                               \
    "smlad   %[a5], %[x1], %[pb], %[a5]\n\t"
#endif

/* Six output pixels of one int8 filter row: a[j] += sum_k w[k] * column j[k] over `runs` runs
 * of 4 values. One weight word, extended once, feeds twelve SMLADs; four runs per loop turn. */
EQ_INLINE void eq_dot6_int8(const int16_t *col, const int8_t *w, int32_t runs, int32_t a[6])
{
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3], a4 = a[4], a5 = a[5];
#if EQ_ASM
    uint32_t x02, x13, w02, w13;
    __asm volatile(
        "tst     %[runs], #1\n\t"
        "beq     2f\n\t"
        EQ_DOT8_RUN
        "2:\n\t"
        "tst     %[runs], #2\n\t"
        "beq     4f\n\t"
        EQ_DOT8_RUN
        EQ_DOT8_RUN
        "4:\n\t"
        "lsrs    %[runs], %[runs], #2\n\t"
        "beq     3f\n\t"
        "1:\n\t"
        EQ_DOT8_RUN
        EQ_DOT8_RUN
        EQ_DOT8_RUN
        EQ_DOT8_RUN
        "subs    %[runs], %[runs], #1\n\t"
        "bne     1b\n\t"
        "3:\n\t"
        : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [a4] "+r"(a4),
          [a5] "+r"(a5), [col] "+r"(col), [w] "+r"(w), [runs] "+r"(runs), [x02] "=&r"(x02),
          [x13] "=&r"(x13), [w02] "=&r"(w02), [w13] "=&r"(w13)
        :
        : "cc", "memory");
#else
    for (; runs > 0; --runs, w += 4, col += 4 * EQ_COLS) {
        const uint32_t wv = eq_load32(w);
        const uint32_t w02 = EQ_SXTB16(wv), w13 = EQ_SXTB16_ROR8(wv);
        a0 = EQ_SMLAD(eq_load32(col + 2), w13, EQ_SMLAD(eq_load32(col), w02, a0));
        a1 = EQ_SMLAD(eq_load32(col + 6), w13, EQ_SMLAD(eq_load32(col + 4), w02, a1));
        a2 = EQ_SMLAD(eq_load32(col + 10), w13, EQ_SMLAD(eq_load32(col + 8), w02, a2));
        a3 = EQ_SMLAD(eq_load32(col + 14), w13, EQ_SMLAD(eq_load32(col + 12), w02, a3));
        a4 = EQ_SMLAD(eq_load32(col + 18), w13, EQ_SMLAD(eq_load32(col + 16), w02, a4));
        a5 = EQ_SMLAD(eq_load32(col + 22), w13, EQ_SMLAD(eq_load32(col + 20), w02, a5));
    }
#endif
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
    a[4] = a4;
    a[5] = a5;
}

/* The same for int4 weights: runs of 8 (one packed word); a[j] += 16 * the sum. The weight
 * word is read twice, low nibbles then high ones, so that six accumulators fit in registers. */
EQ_INLINE void eq_dot6_int4(const int16_t *col, const int8_t *w, int32_t runs, int32_t a[6])
{
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3], a4 = a[4], a5 = a[5];
#if EQ_ASM
    if (runs > 0) {
        uint32_t x0, x1, pa, pb;
        __asm volatile(
            "1:\n\t"
            "ldr     %[pa], [%[w]]\n\t"
            "lsl     %[pa], %[pa], #4\n\t"
            "and     %[pa], %[pa], #0xF0F0F0F0\n\t"
            "sxtb16  %[pb], %[pa], ror #8\n\t"
            "sxtb16  %[pa], %[pa]\n\t"
            EQ_DOT4_HALF(0)
            "ldr     %[pa], [%[w]], #4\n\t"
            "and     %[pa], %[pa], #0xF0F0F0F0\n\t"
            "sxtb16  %[pb], %[pa], ror #8\n\t"
            "sxtb16  %[pa], %[pa]\n\t"
            EQ_DOT4_HALF(8)
            "add     %[col], %[col], #96\n\t"
            "subs    %[runs], %[runs], #1\n\t"
            "bne     1b\n\t"
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [a4] "+r"(a4),
              [a5] "+r"(a5), [col] "+r"(col), [w] "+r"(w), [runs] "+r"(runs), [x0] "=&r"(x0),
              [x1] "=&r"(x1), [pa] "=&r"(pa), [pb] "=&r"(pb)
            :
            : "cc", "memory");
    }
#else
    for (; runs > 0; --runs, w += 4, col += 8 * EQ_COLS) {
        const uint32_t wv = eq_load32(w);
        const uint32_t p04 = EQ_SXTB16(EQ_INT4_LO(wv)), p26 = EQ_SXTB16_ROR8(EQ_INT4_LO(wv));
        const uint32_t p15 = EQ_SXTB16(EQ_INT4_HI(wv)), p37 = EQ_SXTB16_ROR8(EQ_INT4_HI(wv));
        int32_t *acc[6];
        int32_t j;
        acc[0] = &a0;
        acc[1] = &a1;
        acc[2] = &a2;
        acc[3] = &a3;
        acc[4] = &a4;
        acc[5] = &a5;
        for (j = 0; j < 6; ++j) {
            const int16_t *c = col + 8 * j;
            *acc[j] = EQ_SMLAD(eq_load32(c), p04, *acc[j]);
            *acc[j] = EQ_SMLAD(eq_load32(c + 2), p26, *acc[j]);
            *acc[j] = EQ_SMLAD(eq_load32(c + 4), p15, *acc[j]);
            *acc[j] = EQ_SMLAD(eq_load32(c + 6), p37, *acc[j]);
        }
    }
#endif
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
    a[4] = a4;
    a[5] = a5;
}

/* Three output pixels (columns 0-2 of the block), for blocks of at most three pixels. */
EQ_INLINE void eq_dot3_int8(const int16_t *col, const int8_t *w, int32_t runs, int32_t a[3])
{
    int32_t a0 = a[0], a1 = a[1], a2 = a[2];
#if EQ_ASM
    if (runs > 0) {
        uint32_t x02, x13, w02, w13;
        __asm volatile(
            "1:\n\t"
            "ldr     %[w13], [%[w]], #4\n\t"
            "ldrd    %[x02], %[x13], [%[col]]\n\t"
            "sxtb16  %[w02], %[w13]\n\t"
            "sxtb16  %[w13], %[w13], ror #8\n\t"
            EQ_THREE_COLS_LOOP_TAIL
            : EQ_THREE_COLS_OPERANDS
            :
            : "cc", "memory");
    }
#else
    for (; runs > 0; --runs, w += 4, col += 4 * EQ_COLS) {
        const uint32_t wv = eq_load32(w);
        const uint32_t w02 = EQ_SXTB16(wv), w13 = EQ_SXTB16_ROR8(wv);
        a0 = EQ_SMLAD(eq_load32(col + 2), w13, EQ_SMLAD(eq_load32(col), w02, a0));
        a1 = EQ_SMLAD(eq_load32(col + 6), w13, EQ_SMLAD(eq_load32(col + 4), w02, a1));
        a2 = EQ_SMLAD(eq_load32(col + 10), w13, EQ_SMLAD(eq_load32(col + 8), w02, a2));
    }
#endif
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
}

/* The same for int4 weights (a[j] += 16 * the sum). */
EQ_INLINE void eq_dot3_int4(const int16_t *col, const int8_t *w, int32_t runs, int32_t a[3])
{
    int32_t a0 = a[0], a1 = a[1], a2 = a[2];
    for (; runs > 0; --runs, w += 4, col += 8 * EQ_COLS) {
        const uint32_t wv = eq_load32(w);
        const uint32_t p04 = EQ_SXTB16(EQ_INT4_LO(wv)), p26 = EQ_SXTB16_ROR8(EQ_INT4_LO(wv));
        const uint32_t p15 = EQ_SXTB16(EQ_INT4_HI(wv)), p37 = EQ_SXTB16_ROR8(EQ_INT4_HI(wv));
        a0 = EQ_SMLAD(eq_load32(col + 2), p26, EQ_SMLAD(eq_load32(col), p04, a0));
        a0 = EQ_SMLAD(eq_load32(col + 6), p37, EQ_SMLAD(eq_load32(col + 4), p15, a0));
        a1 = EQ_SMLAD(eq_load32(col + 10), p26, EQ_SMLAD(eq_load32(col + 8), p04, a1));
        a1 = EQ_SMLAD(eq_load32(col + 14), p37, EQ_SMLAD(eq_load32(col + 12), p15, a1));
        a2 = EQ_SMLAD(eq_load32(col + 18), p26, EQ_SMLAD(eq_load32(col + 16), p04, a2));
        a2 = EQ_SMLAD(eq_load32(col + 22), p37, EQ_SMLAD(eq_load32(col + 20), p15, a2));
    }
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
}

/* The output stage in assembly: SMMLAR as above, the shift, SSAT for the whole int8 clamp and
 * the store. eq_rq4_*_quad: four channels of one depthwise pixel (u: m2, add, r per channel),
 * outputs side by side; eq_rq6_*_strided: one channel (q), six pixels `stride` apart. */
#if EQ_ASM
#define EQ_RQ_ONE(A, U, OFF, STORE)                         \
    "ldrd    %[m2], %[h], [%[u], #" #U "]\n\t"                \
    "ldr     %[r], [%[u], #" #U "+8]\n\t"                     \
    "add     %[t], %[" A "], %[h]\n\t"                        \
    "add     %[t], %[t], %[" A "], asr #31\n\t"               \
    "smmlar  %[t], %[" A "], %[m2], %[t]\n\t"                 \
    "asr     %[t], %[t], %[r]\n\t"                            \
    OFF                                                       \
    "ssat    %[t], #8, %[t]\n\t"                              \
    STORE "\n\t"
#define EQ_RQ_ADD_OFF "add     %[t], %[t], %[off]\n\t"
/* four channels (u: 4 x {m2, add, r}), outputs side by side; `offset` added after the shift,
 * or (folded) already in each add */
EQ_INLINE void eq_rq4_right_quad(int32_t a0, int32_t a1, int32_t a2, int32_t a3,
                                 const int32_t *u, int32_t offset, int8_t *dst)
{
    int32_t m2, h, r, t;
    __asm volatile(
        EQ_RQ_ONE("a0", 0, EQ_RQ_ADD_OFF, "strb    %[t], [%[d], #0]")
        EQ_RQ_ONE("a1", 12, EQ_RQ_ADD_OFF, "strb    %[t], [%[d], #1]")
        EQ_RQ_ONE("a2", 24, EQ_RQ_ADD_OFF, "strb    %[t], [%[d], #2]")
        EQ_RQ_ONE("a3", 36, EQ_RQ_ADD_OFF, "strb    %[t], [%[d], #3]")
        : [m2] "=&r"(m2), [h] "=&r"(h), [r] "=&r"(r), [t] "=&r"(t)
        : [a0] "r"(a0), [a1] "r"(a1), [a2] "r"(a2), [a3] "r"(a3), [u] "r"(u),
          [off] "r"(offset), [d] "r"(dst)
        : "memory");
}
EQ_INLINE void eq_rq4_folded_quad(int32_t a0, int32_t a1, int32_t a2, int32_t a3,
                                  const int32_t *u, int8_t *dst)
{
    int32_t m2, h, r, t;
    __asm volatile(
        EQ_RQ_ONE("a0", 0, "", "strb    %[t], [%[d], #0]")
        EQ_RQ_ONE("a1", 12, "", "strb    %[t], [%[d], #1]")
        EQ_RQ_ONE("a2", 24, "", "strb    %[t], [%[d], #2]")
        EQ_RQ_ONE("a3", 36, "", "strb    %[t], [%[d], #3]")
        : [m2] "=&r"(m2), [h] "=&r"(h), [r] "=&r"(r), [t] "=&r"(t)
        : [a0] "r"(a0), [a1] "r"(a1), [a2] "r"(a2), [a3] "r"(a3), [u] "r"(u), [d] "r"(dst)
        : "memory");
}
/* one channel (q: its eq_rqc_t), six pixels `stride` apart; RIGHT adds the offset after the
 * shift, FOLDED has it in the rounding term */
#define EQ_RQ_SAME(A, OFF, STORE)                             \
    "add     %[t], %[" A "], %[h]\n\t"                        \
    "add     %[t], %[t], %[" A "], asr #31\n\t"               \
    "smmlar  %[t], %[" A "], %[m2], %[t]\n\t"                 \
    "asr     %[t], %[t], %[r]\n\t"                            \
    OFF                                                       \
    "ssat    %[t], #8, %[t]\n\t"                              \
    STORE "\n\t"
#define EQ_RQ6_STRIDED(OFF)                                   \
    __asm volatile(                                           \
        "ldrd    %[m2], %[h], [%[t], #4]\n\t"                 \
        "ldr     %[r], [%[t], #12]\n\t"                       \
        "asr     %[off], %[r], #16\n\t"                       \
        "ubfx    %[r], %[r], #8, #8\n\t"                      \
        EQ_RQ_SAME("a0", OFF, "strb    %[t], [%[d]]")         \
        EQ_RQ_SAME("a1", OFF, "strb    %[t], [%[d], %[s]]")   \
        "add     %[d], %[d], %[s], lsl #1\n\t"                \
        EQ_RQ_SAME("a2", OFF, "strb    %[t], [%[d]]")         \
        EQ_RQ_SAME("a3", OFF, "strb    %[t], [%[d], %[s]]")   \
        "add     %[d], %[d], %[s], lsl #1\n\t"                \
        EQ_RQ_SAME("a4", OFF, "strb    %[t], [%[d]]")         \
        EQ_RQ_SAME("a5", OFF, "strb    %[t], [%[d], %[s]]")   \
        : [m2] "=&r"(m2), [h] "=&r"(h), [r] "=&r"(r), [off] "=&r"(off), [t] "+r"(q), \
          [d] "+r"(dst)                                       \
        : [a0] "r"(a[0]), [a1] "r"(a[1]), [a2] "r"(a[2]), [a3] "r"(a[3]), [a4] "r"(a[4]), \
          [a5] "r"(a[5]), [s] "r"(stride)                     \
        : "memory")
EQ_INLINE void eq_rq6_right_strided(const int32_t a[6], const eq_rqc_t *q, int8_t *dst,
                                    int32_t stride)
{
    int32_t m2, h, r, off;
    EQ_RQ6_STRIDED(EQ_RQ_ADD_OFF);
}
EQ_INLINE void eq_rq6_folded_strided(const int32_t a[6], const eq_rqc_t *q, int8_t *dst,
                                     int32_t stride)
{
    int32_t m2, h, r, off;
    EQ_RQ6_STRIDED("");
    (void)off;
}
#else
EQ_INLINE void eq_rq4_right_quad(int32_t a0, int32_t a1, int32_t a2, int32_t a3,
                                 const int32_t *u, int32_t offset, int8_t *dst)
{
    dst[0] = (int8_t)eq_sat8(eq_rq_right(a0, u[0], u[1], u[2]) + offset);
    dst[1] = (int8_t)eq_sat8(eq_rq_right(a1, u[3], u[4], u[5]) + offset);
    dst[2] = (int8_t)eq_sat8(eq_rq_right(a2, u[6], u[7], u[8]) + offset);
    dst[3] = (int8_t)eq_sat8(eq_rq_right(a3, u[9], u[10], u[11]) + offset);
}
EQ_INLINE void eq_rq4_folded_quad(int32_t a0, int32_t a1, int32_t a2, int32_t a3,
                                  const int32_t *u, int8_t *dst)
{
    eq_rq4_right_quad(a0, a1, a2, a3, u, 0, dst);
}
EQ_INLINE void eq_rq6_right_strided(const int32_t a[6], const eq_rqc_t *q, int8_t *dst,
                                    int32_t stride)
{
    const int32_t r = EQ_RQ_AMOUNT(*q), offset = q->shift >> 16;
    int32_t j;
    for (j = 0; j < 6; ++j) {
        dst[j * stride] = (int8_t)eq_sat8(eq_rq_right(a[j], q->m2, q->add, r) + offset);
    }
}
EQ_INLINE void eq_rq6_folded_strided(const int32_t a[6], const eq_rqc_t *q, int8_t *dst,
                                     int32_t stride)
{
    const int32_t r = EQ_RQ_AMOUNT(*q);
    int32_t j;
    for (j = 0; j < 6; ++j) {
        dst[j * stride] = (int8_t)eq_sat8(eq_rq_right(a[j], q->m2, q->add, r));
    }
}
#endif

/* a[j] += the int16-pair weights (weight_bits 16) times column j of the block, j < 3 for
 * blocks of at most three pixels, else all six (missing pixels repeat the last one). */
static void eq_dot_wide(const int16_t *col, const int8_t *w, int32_t runs, int32_t *a, int32_t n)
{
    int32_t j;
#if EQ_ASM
    if (n <= 3 && runs > 0) {
        int32_t a0 = a[0], a1 = a[1], a2 = a[2];
        uint32_t x02, x13, w02, w13;
        __asm volatile(
            "1:\n\t"
            "ldrd    %[w02], %[w13], [%[w]], #8\n\t"
            "ldrd    %[x02], %[x13], [%[col]]\n\t"
            EQ_THREE_COLS_LOOP_TAIL
            : EQ_THREE_COLS_OPERANDS
            :
            : "cc", "memory");
        a[0] = a0;
        a[1] = a1;
        a[2] = a2;
        return;
    }
    if (runs > 0) {
        int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3], a4 = a[4], a5 = a[5];
        uint32_t x02, x13, w02, w13;
        __asm volatile(
            "1:\n\t"
            EQ_DOT16_RUN
            "subs    %[runs], %[runs], #1\n\t"
            "bne     1b\n\t"
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [a4] "+r"(a4),
              [a5] "+r"(a5), [col] "+r"(col), [w] "+r"(w), [runs] "+r"(runs), [x02] "=&r"(x02),
              [x13] "=&r"(x13), [w02] "=&r"(w02), [w13] "=&r"(w13)
            :
            : "cc", "memory");
        a[0] = a0;
        a[1] = a1;
        a[2] = a2;
        a[3] = a3;
        a[4] = a4;
        a[5] = a5;
        return;
    }
#endif
    for (; runs > 0; --runs, w += 8, col += 4 * EQ_COLS) {
        const uint32_t w02 = eq_load32(w), w13 = eq_load32(w + 4);
        for (j = 0; j < (n <= 3 ? 3 : EQ_COLS); ++j) {
            a[j] = EQ_SMLAD(eq_load32(col + 4 * j + 2), w13,
                            EQ_SMLAD(eq_load32(col + 4 * j), w02, a[j]));
        }
    }
}

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
 * out_c between pixels. The hot loop (EQ_COLS pixels, whole int8 clamp) keeps few values live
 * so that the compiler holds them in registers around the inline assembly. */
typedef void (*eq_block_fn)(const eq_conv_t *p, const int16_t *cols, const eq_rqc_t *rq,
                            int8_t *dst, int32_t n);

/* wide (a constant where inlined): weight_bits 16, in eq_conv_block_wide only, so that the
 * linker drops that code from firmware without such weights. */
EQ_INLINE void eq_conv_block_any(const eq_conv_t *p, const int16_t *cols, const eq_rqc_t *rq,
                                 int8_t *dst, int32_t n, const int wide)
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
                          int8_t *dst, int32_t n)
{
    eq_conv_block_any(p, cols, rq, dst, n, 0);
}

static void eq_conv_block_wide(const eq_conv_t *p, const int16_t *cols, const eq_rqc_t *rq,
                               int8_t *dst, int32_t n)
{
    eq_conv_block_any(p, cols, rq, dst, n, 1);
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
    eq_rqc_t *rq = (eq_rqc_t *)(void *)(cols + EQ_COLS * k_pad);
    uint32_t tmp_words[EQ_GATHER_MAX / 4 + 1]; /* + 1: the gather's last word may run over */
    int8_t *tmp = (int8_t *)tmp_words;
    int32_t b, pix, oc, j;
    for (oc = 0; oc < out_c; ++oc) {
        rq[oc] = eq_rqc_make(p->multiplier[oc], p->shift[oc], p->bias ? p->bias[oc] : 0,
                             p->out_offset);
    }
    memset(tmp + k_total, -p->in_offset, (size_t)(k_pad - k_total)); /* times zero weights */
    for (b = 0; b < p->batches; ++b) {
        const int8_t *image = in + b * p->in_h * p->in_w * p->in_c;
        int8_t *dst = out + b * pixels * out_c;
        for (pix = 0; pix < pixels; pix += EQ_COLS) {
            const int32_t n = EQ_MIN(EQ_COLS, pixels - pix);
            if (p->row_words > 0) {
                eq_columns_lines(p, image, pix, n, cols, tmp, off2);
            }
            for (j = 0; j < EQ_COLS && p->row_words == 0; ++j) {
                /* missing pixels repeat the last one */
                const int32_t q = pix + EQ_MIN(j, n - 1);
                const int8_t *src = direct
                    ? image + (q / p->out_w * p->stride_h * p->in_w + q % p->out_w * p->stride_w)
                              * p->in_c
                    : eq_gather(p, image, 0, q / p->out_w, q % p->out_w, tmp);
                eq_column(src, cols, j, run, k_pad, off2);
            }
            block(p, cols, rq, dst + pix * out_c, n);
        }
    }
}

/* ---- DEPTHWISE_CONV_2D 3x3, depth multiplier 1 ------------------------------------------------
 * Four channels at a time over the whole image, from a ring of three input rows copied into the
 * scratch with the padding filled in (the input zero point), so that every pixel takes the same
 * nine taps: per filter row, taps 0 and 1 by SMLAD on PKH-paired values, tap 2 by
 * SMLABB/SMLATT. The accumulators start from bias + input offset * (sum of the nine weights).
 * Channels left over, or whose output stage has no fast formula, go one at a time through the
 * reference code. */
static int32_t eq_depthwise_one(const eq_depthwise_t *p, const int8_t *in, int32_t b,
                                int32_t oy, int32_t ox, int32_t c);

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
        if (p->weight_bits == 4) {
            e02[t] = eq_pair16(eq_weight(p->weights, i, 4), eq_weight(p->weights, i + 2, 4));
            e13[t] = eq_pair16(eq_weight(p->weights, i + 1, 4), eq_weight(p->weights, i + 3, 4));
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
static void eq_depthwise3x3_fast(const eq_depthwise_t *p, const int8_t *in, int8_t *out,
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
    if (scratch != NULL && groups == 1 && p->filter_stride % (p->weight_bits == 4 ? 8 : 4) == 0
        && p->filter_stride <= EQ_GATHER_MAX && p->weight_bits != 16) {
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

void eq_depthwise_conv2d(const eq_depthwise_t *p, const int8_t *in, int8_t *out,
                         int8_t *scratch)
{
    int32_t b, oy, ox, oc;
#if EQ_FAST
    if (scratch != NULL && p->depth_multiplier == 1 && p->filter_h == 3 && p->filter_w == 3
        && p->dilation_h == 1 && p->dilation_w == 1) {
        eq_depthwise3x3_fast(p, in, out, (uint32_t *)(void *)scratch);
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

/* ---- FULLY_CONNECTED: reference_integer_ops::FullyConnected(PerChannel) ---------------- */

void eq_fully_connected(const eq_fully_connected_t *p, const int8_t *in, int8_t *out)
{
    int32_t b, o, d;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *row = in + b * p->accum_depth;
        for (o = 0; o < p->out_depth; ++o) {
            const int32_t q = p->per_channel ? o : 0;
            const int32_t wi = o * p->accum_depth;
            int32_t acc = 0;
            for (d = 0; d < p->accum_depth; ++d) {
                acc += (eq_weight(p->weights, wi + d, p->weight_bits) + p->weight_offset)
                       * (row[d] + p->in_offset);
            }
            if (p->bias) {
                acc += p->bias[o];
            }
            acc = eq_mbqm(acc, p->multiplier[q], p->shift[q]) + p->out_offset;
            out[b * p->out_depth + o] = (int8_t)EQ_CLAMP(acc, p->act_min, p->act_max);
        }
    }
}

/* ---- ADD: reference_integer_ops::Add / BroadcastAdd4DSlow ------------------------------ */

void eq_add(const eq_add_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    int32_t i0, i1, i2, i3, n = 0;
    for (i0 = 0; i0 < p->out_dims[0]; ++i0) {
        for (i1 = 0; i1 < p->out_dims[1]; ++i1) {
            for (i2 = 0; i2 < p->out_dims[2]; ++i2) {
                for (i3 = 0; i3 < p->out_dims[3]; ++i3) {
                    const int32_t a = i0 * p->in1_strides[0] + i1 * p->in1_strides[1]
                                      + i2 * p->in1_strides[2] + i3 * p->in1_strides[3];
                    const int32_t c = i0 * p->in2_strides[0] + i1 * p->in2_strides[1]
                                      + i2 * p->in2_strides[2] + i3 * p->in2_strides[3];
                    const int32_t x1 = eq_shl(in1[a] + p->in1_offset, p->left_shift);
                    const int32_t x2 = eq_shl(in2[c] + p->in2_offset, p->left_shift);
                    const int32_t s1 = eq_mbqm(x1, p->in1_multiplier, p->in1_shift);
                    const int32_t s2 = eq_mbqm(x2, p->in2_multiplier, p->in2_shift);
                    int32_t r = eq_mbqm(s1 + s2, p->out_multiplier, p->out_shift)
                                + p->out_offset;
                    out[n++] = (int8_t)EQ_CLAMP(r, p->act_min, p->act_max);
                }
            }
        }
    }
}

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

/* ---- MEAN: reference_ops::QuantizedMeanOrSum (multiplier already divided by the count) -- */

void eq_mean(const eq_mean_t *p, const int8_t *in, int8_t *out)
{
    int32_t o[4], r[4], kept[4], span[4], stride[4], d, n = 0;
    stride[3] = 1;
    for (d = 2; d >= 0; --d) {
        stride[d] = stride[d + 1] * p->in_dims[d + 1];
    }
    for (d = 0; d < 4; ++d) {
        kept[d] = p->reduce[d] ? 1 : p->in_dims[d];
        span[d] = p->reduce[d] ? p->in_dims[d] : 1;
    }
    for (o[0] = 0; o[0] < kept[0]; ++o[0]) {
        for (o[1] = 0; o[1] < kept[1]; ++o[1]) {
            for (o[2] = 0; o[2] < kept[2]; ++o[2]) {
                for (o[3] = 0; o[3] < kept[3]; ++o[3]) {
                    int32_t sum = 0, v;
                    for (r[0] = 0; r[0] < span[0]; ++r[0]) {
                        for (r[1] = 0; r[1] < span[1]; ++r[1]) {
                            for (r[2] = 0; r[2] < span[2]; ++r[2]) {
                                for (r[3] = 0; r[3] < span[3]; ++r[3]) {
                                    sum += in[(o[0] + r[0]) * stride[0] + (o[1] + r[1]) * stride[1]
                                              + (o[2] + r[2]) * stride[2] + o[3] + r[3]];
                                }
                            }
                        }
                    }
                    v = eq_mbqm(sum - p->in_zero_point * p->count, p->multiplier, p->shift)
                        + p->out_zero_point;
                    out[n++] = (int8_t)EQ_CLAMP(v, -128, 127);
                }
            }
        }
    }
}

/* ---- PAD: reference_ops::Pad with the output zero point as the pad value ---------------- */

void eq_pad(const eq_pad_t *p, const int8_t *in, int8_t *out)
{
    int32_t od[4], i[4], d, n = 0;
    for (d = 0; d < 4; ++d) {
        od[d] = p->before[d] + p->in_dims[d] + p->after[d];
    }
    for (i[0] = 0; i[0] < od[0]; ++i[0]) {
        for (i[1] = 0; i[1] < od[1]; ++i[1]) {
            for (i[2] = 0; i[2] < od[2]; ++i[2]) {
                for (i[3] = 0; i[3] < od[3]; ++i[3]) {
                    int inside = 1;
                    for (d = 0; d < 4; ++d) {
                        if (i[d] < p->before[d] || i[d] >= p->before[d] + p->in_dims[d]) {
                            inside = 0;
                        }
                    }
                    out[n++] = inside
                        ? in[(((i[0] - p->before[0]) * p->in_dims[1] + i[1] - p->before[1])
                              * p->in_dims[2] + i[2] - p->before[2]) * p->in_dims[3]
                             + i[3] - p->before[3]]
                        : p->value;
                }
            }
        }
    }
}

/* ---- CONCATENATION (int8 inputs share the output's scale and zero point in TFLM) -------- */

void eq_concat(const eq_concat_t *p, const int8_t *const *ins, int8_t *out)
{
    int32_t o, k;
    for (o = 0; o < p->outer; ++o) {
        for (k = 0; k < p->num_inputs; ++k) {
            memcpy(out, ins[k] + o * p->copy[k], (size_t)p->copy[k]);
            out += p->copy[k];
        }
    }
}

/* ---- SOFTMAX: reference_ops::Softmax (int8 -> int8), gemmlowp fixed-point exp ------------ */

static int32_t eq_add_wrap(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

static int32_t eq_sat_shl(int32_t x, int32_t exponent) /* SaturatingRoundingMultiplyByPOT>0 */
{
    const int32_t threshold = (int32_t)(((uint32_t)1 << (31 - exponent)) - 1u);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return eq_shl(x, exponent);
}

/* exp(x) for x in [-1/4, 0), Q0.31 in and out */
static int32_t eq_exp_quarter(int32_t a)
{
    const int32_t constant_term = 1895147668;    /* exp(-1/8) */
    const int32_t constant_1_over_3 = 715827883; /* 1/3 */
    const int32_t x = eq_add_wrap(a, 1 << 28);   /* a + 1/8 */
    const int32_t x2 = eq_srdhm(x, x);
    const int32_t x3 = eq_srdhm(x2, x);
    const int32_t x4 = eq_srdhm(x2, x2);
    const int32_t x4_over_4 = eq_rdbpot(x4, 2);
    const int32_t poly = eq_rdbpot(
        eq_add_wrap(eq_srdhm(eq_add_wrap(x4_over_4, x3), constant_1_over_3), x2), 1);
    return eq_add_wrap(constant_term, eq_srdhm(constant_term, eq_add_wrap(x, poly)));
}

/* exp(a) for a <= 0, a in Q5.26, result Q0.31 (gemmlowp exp_on_negative_values<5>) */
static int32_t eq_exp_on_negative_values(int32_t a)
{
    static const int32_t multipliers[7] = {
        1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int32_t one_quarter = 1 << 24;
    const int32_t a_mod = eq_add_wrap(a & (one_quarter - 1), -one_quarter);
    int32_t result = eq_exp_quarter(eq_sat_shl(a_mod, 5));
    const int32_t remainder = eq_add_wrap(a_mod, -a);
    int32_t k;
    for (k = 0; k < 7; ++k) { /* exponents -2 .. +4 */
        if (remainder & (int32_t)((uint32_t)1 << (26 - 2 + k))) {
            result = eq_srdhm(result, multipliers[k]);
        }
    }
    return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + x) for x in [0, 1), Q0.31 (gemmlowp one_over_one_plus_x_for_x_in_0_1) */
static int32_t eq_one_over_one_plus_x(int32_t a)
{
    const int64_t sum = (int64_t)a + INT32_MAX;
    const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    const int32_t constant_48_over_17 = 1515870810;
    const int32_t constant_neg_32_over_17 = -1010580540;
    int32_t x = eq_add_wrap(constant_48_over_17,
                            eq_srdhm(half_denominator, constant_neg_32_over_17));
    int32_t i;
    for (i = 0; i < 3; ++i) {
        const int32_t half_denominator_times_x = eq_srdhm(half_denominator, x);
        const int32_t one_minus = eq_add_wrap(1 << 29, -half_denominator_times_x);
        x = eq_add_wrap(x, eq_sat_shl(eq_srdhm(x, one_minus), 2));
    }
    return eq_sat_shl(x, 1);
}

static int32_t eq_count_leading_zeros(uint32_t x)
{
    int32_t n = 0;
    if (x == 0) {
        return 32;
    }
    while (!(x & 0x80000000u)) {
        x <<= 1;
        ++n;
    }
    return n;
}

void eq_softmax(const eq_softmax_t *p, const int8_t *in, int8_t *out)
{
    int32_t i, c;
    for (i = 0; i < p->outer; ++i) {
        const int8_t *row = in + i * p->depth;
        int8_t *dst = out + i * p->depth;
        int32_t max_in_row = -128, sum_of_exps = 0, headroom, num_bits_over_unit, exponent;
        int32_t shifted_scale;
        for (c = 0; c < p->depth; ++c) {
            max_in_row = EQ_MAX(max_in_row, row[c]);
        }
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = row[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t scaled = eq_srdhm(eq_shl(diff, p->input_left_shift),
                                                p->input_multiplier);
                sum_of_exps = eq_add_wrap(sum_of_exps,
                                          eq_rdbpot(eq_exp_on_negative_values(scaled), 12));
            }
        }
        headroom = eq_count_leading_zeros((uint32_t)sum_of_exps);
        num_bits_over_unit = 12 - headroom;
        shifted_scale = eq_one_over_one_plus_x(
            (int32_t)(((uint32_t)sum_of_exps << headroom) - ((uint32_t)1 << 31)));
        exponent = num_bits_over_unit + 31 - 8;
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = row[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t scaled = eq_srdhm(eq_shl(diff, p->input_left_shift),
                                                p->input_multiplier);
                const int32_t e = eq_exp_on_negative_values(scaled);
                const int32_t v = eq_rdbpot(eq_srdhm(shifted_scale, e), exponent) - 128;
                dst[c] = (int8_t)EQ_CLAMP(v, -128, 127);
            } else {
                dst[c] = -128;
            }
        }
    }
}

/* ---- QUANTIZE int8 -> int8: reference_ops::Requantize ---------------------------------- */

void eq_requantize(const eq_requantize_t *p, const int8_t *in, int8_t *out)
{
    int32_t i;
    for (i = 0; i < p->count; ++i) {
        const int32_t v = eq_mbqm(in[i] - p->in_zero_point, p->multiplier, p->shift)
                          + p->out_zero_point;
        out[i] = (int8_t)EQ_CLAMP(v, -128, 127);
    }
}

void eq_copy(const int8_t *in, int8_t *out, int32_t bytes)
{
    if (in != out) {
        memmove(out, in, (size_t)bytes);
    }
}
