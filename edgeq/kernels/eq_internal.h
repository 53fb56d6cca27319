/* edgeq kernels, private header: what the kernel files share (not part of the public API).
 *
 * Part of edgeq (Apache-2.0). Written from the TFLite arithmetic specification (gemmlowp
 * fixed point, double-rounding requantization); each kernel names the TFLM kernel whose
 * results it reproduces. Integer overflow is avoided with unsigned arithmetic where TFLM
 * relies on two's complement wrapping, so the code is clean under UBSan.
 *
 * Here: gemmlowp fixed point (eq_srdhm, eq_rdbpot), weight access for int8 / int4 / int16
 * pairs, the EQ_FAST (DSP fast paths) and EQ_ASM (their inline assembly) selection, the DSP
 * intrinsics (emulated in C under EDGEQ_FAST_EMULATED), and the fast paths' requantization
 * stages: prepared once per channel, applied in a few instructions (SMMLAR, shift, SSAT) to
 * four channels or six pixels at once, in inline assembly with EQ_ASM.
 * The engine compiles the kernel files as one translation unit (edgeq_kernels.c, generated);
 * helpers that a model's kernels do not call are marked unused, so that the unit builds
 * without warnings for any subset of the kernels.
 */
#ifndef EQ_INTERNAL_H
#define EQ_INTERNAL_H

#include "edgeq_kernels.h"

#include <string.h>

#if defined(__GNUC__)
#define EQ_INLINE static inline __attribute__((always_inline))
#define EQ_NOINLINE static __attribute__((noinline))
#else
#define EQ_INLINE static inline
#define EQ_NOINLINE static
#endif
#if defined(__GNUC__)
#define EQ_HELPER static __attribute__((unused))
#else
#define EQ_HELPER static
#endif

#define EQ_MIN(a, b) ((a) < (b) ? (a) : (b))
#define EQ_MAX(a, b) ((a) > (b) ? (a) : (b))
#define EQ_CLAMP(x, lo, hi) EQ_MIN(EQ_MAX((x), (lo)), (hi))

/* ---- fixed point (gemmlowp) ------------------------------------------------------------ */

EQ_HELPER int32_t eq_srdhm(int32_t a, int32_t b) /* SaturatingRoundingDoublingHighMul */
{
    int64_t ab, nudge;
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    ab = (int64_t)a * (int64_t)b;
    nudge = ab >= 0 ? (int64_t)(1 << 30) : (int64_t)(1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

EQ_HELPER int32_t eq_rdbpot(int32_t x, int32_t exponent) /* RoundingDivideByPOT */
{
    const int32_t mask = (int32_t)(((uint32_t)1 << exponent) - 1u);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

EQ_HELPER int32_t eq_shl(int32_t x, int32_t n) /* x * 2^n, wrapping like TFLM's int32 math */
{
    return (int32_t)((uint32_t)x << n);
}

#define eq_mbqm eq_multiply_by_quantized_multiplier

/* A weight, int8, int4 (two per byte, first in the low nibble) or 2 or 3 bits (a dense
 * stream: value i in bits [bits * i, bits * (i + 1)), least significant first; the second
 * byte is read only when the value crosses into it, so the array has no slack). */
EQ_HELPER int32_t eq_weight(const int8_t *w, int32_t i, int32_t bits)
{
    if (bits < 4) {
        const uint32_t at = (uint32_t)(bits * i), shift = at & 7u;
        uint32_t v = (uint8_t)w[at >> 3];
        if (shift + (uint32_t)bits > 8u) {
            v |= (uint32_t)(uint8_t)w[(at >> 3) + 1u] << 8;
        }
        v = (v >> shift) & ((1u << bits) - 1u);
        return (int32_t)v - (int32_t)((v >> (bits - 1)) << bits);
    }
    if (bits == 4) {
        const uint8_t b = (uint8_t)w[i >> 1];
        const int32_t nibble = (i & 1) ? (int32_t)(b >> 4) : (int32_t)(b & 0x0F);
        return nibble >= 8 ? nibble - 16 : nibble;
    }
    return w[i];
}

/* The same, or weight_bits 16: run r of four values stored as (v0 v2) (v1 v3), that is int16
 * 4r + 0, 2, 1, 3. */
EQ_HELPER int32_t eq_weight_any(const int8_t *w, int32_t i, int32_t bits)
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
#define EQ_SMLABT(a, b, acc) __smlabt((int32_t)(a), (int32_t)(b), (acc))
#define EQ_SMLATB(a, b, acc) __smlatb((int32_t)(a), (int32_t)(b), (acc))
#else
/* The same instructions in C, for testing the fast paths on any host. */
EQ_HELPER uint32_t eq_pack16(int32_t lo, int32_t hi)
{
    return ((uint32_t)lo & 0xFFFFu) | (((uint32_t)hi & 0xFFFFu) << 16);
}
EQ_HELPER uint32_t EQ_SXTB16(uint32_t x)
{
    return eq_pack16((int8_t)(uint8_t)(x & 0xFFu), (int8_t)(uint8_t)((x >> 16) & 0xFFu));
}
EQ_HELPER uint32_t EQ_SXTB16_ROR8(uint32_t x) { return EQ_SXTB16((x >> 8) | (x << 24)); }
EQ_HELPER uint32_t EQ_SXTAB16(uint32_t a, uint32_t x)
{
    const uint32_t e = EQ_SXTB16(x);
    return eq_pack16(eq_lo16(a) + eq_lo16(e), eq_hi16(a) + eq_hi16(e));
}
EQ_HELPER uint32_t EQ_SXTAB16_ROR8(uint32_t a, uint32_t x)
{
    return EQ_SXTAB16(a, (x >> 8) | (x << 24));
}
EQ_HELPER int32_t EQ_SMLAD(uint32_t a, uint32_t b, int32_t acc)
{
    return acc + eq_lo16(a) * eq_lo16(b) + eq_hi16(a) * eq_hi16(b);
}
EQ_HELPER int32_t EQ_SMLABB(uint32_t a, uint32_t b, int32_t acc)
{
    return acc + eq_lo16(a) * eq_lo16(b);
}
EQ_HELPER int32_t EQ_SMLATT(uint32_t a, uint32_t b, int32_t acc)
{
    return acc + eq_hi16(a) * eq_hi16(b);
}
EQ_HELPER int32_t EQ_SMLABT(uint32_t a, uint32_t b, int32_t acc)
{
    return acc + eq_lo16(a) * eq_hi16(b);
}
EQ_HELPER int32_t EQ_SMLATB(uint32_t a, uint32_t b, int32_t acc)
{
    return acc + eq_hi16(a) * eq_lo16(b);
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

EQ_HELPER uint32_t eq_pair16(int32_t lo, int32_t hi) /* two 16-bit values in a word */
{
    return ((uint32_t)lo & 0xFFFFu) | (((uint32_t)hi & 0xFFFFu) << 16);
}

EQ_HELPER uint32_t eq_load32(const void *p)
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
 *   most 1152 values (|sum| <= 1152 * 255 * 128 < 2^26), so for r >= 1, r <= 30 and
 *   |bias| < 2^31 - 2^29 - 2^26, |SRDHM| <= |acc| < 2^31 - 2^29 and |SRDHM + 2^(r-1)| < 2^31;
 *   for r = 0, l <= 4 and |bias| < 2^(28 - l), |x| < 2^28 + 2^30.
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

EQ_HELPER eq_rqc_t eq_rqc_make(int32_t multiplier, int32_t shift, int32_t bias, int32_t offset)
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
             * is the shifted value plus the offset; |result| < 2^30 + 2^26 + 2^29 */
            rq.add = (int32_t)(((uint32_t)2 * (uint32_t)offset + 1u) << (-shift - 1));
            rq.shift = (int32_t)(high | (uint32_t)(-shift) << 8 | EQ_RQ_FOLDED);
        } else if (shift <= -1 && shift >= -30 && magnitude < 1543503872u) {
            /* 2^31 - 2^29 - 2^26 */
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
EQ_HELPER int32_t eq_smmlar(int32_t a, int32_t b, int32_t c)
{
    const uint64_t sum = ((uint64_t)(uint32_t)c << 32) + (uint64_t)((int64_t)a * b)
                         + 0x80000000u;
    return (int32_t)(uint32_t)(sum >> 32);
}
EQ_HELPER int32_t eq_sat8(int32_t v)
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

EQ_HELPER eq_rqu_t eq_rqu_make(eq_rqc_t rq, int32_t offset)
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
#endif /* EQ_FAST */

/* The opening of a hidden Thumb function written in assembly (the string that starts the
 * kernels' __asm__ blocks): its own section (so --gc-sections drops it when unused), then the
 * label. */
#define EQ_ASM_FUNC_BEGIN(NAME)                                                              \
    ".syntax unified\n\t"                                                                      \
    ".section .text." #NAME ",\"ax\",%progbits\n\t"                                    \
    ".balign 4\n\t"                                                                    \
    ".global " #NAME "\n\t"                                                            \
    ".hidden " #NAME "\n\t"                                                            \
    ".thumb\n\t"                                                                       \
    ".thumb_func\n\t"                                                                  \
    ".type " #NAME ", %function\n"                                                      \
    #NAME ":\n\t"

#endif /* EQ_INTERNAL_H */
