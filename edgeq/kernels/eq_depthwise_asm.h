/* edgeq kernels, private to eq_depthwise.c: the types and assembly of the depthwise strips.
 *
 * eq_dwq_t (one output row of a channel quad from the ring) and eq_dwp_t (a whole quad from
 * planes), the assembly of 1x3 filters (eq_dwp1_s1/s2: one row, from planes or from the ring)
 * and the four-channel fills (eq_dw_fill_asm, eq_dw_fill_asm_plane). The C around them is in
 * eq_depthwise_strips.h. Also the weight-pair packing and the word copy of
 * eq_depthwise_pairs.h. Only with EQ_FAST; the assembly with EQ_ASM.
 */
#ifndef EQ_DEPTHWISE_ASM_H
#define EQ_DEPTHWISE_ASM_H

#include "eq_internal.h"

#if EQ_FAST
/* ---- DEPTHWISE_CONV_2D 1x3 strips, depth multiplier 1 (eq_dw_strip_c also takes 3x3 ones) ----
 * Scratch: the ring, 4 channels x 3 slots x EQ_DW_RS bytes (slot j of channel k at
 * (3k + j) * rs bytes; rs = EQ_DW_RS unless a row needs more), then the prepared strips,
 * 3 rotations x 4 channels x 8 words. Ring row value x is input column x - pad_w of the
 * channel, plus the input offset, 0 in the padding. Input row iy lives in slot iy mod 3; for
 * an output row whose first input row is in slot m, rotation m has each channel's filter rows
 * in slot order. A strip's words: W01 of slots 0, 1, 2 ((tap 0, tap 1) of the filter row held
 * there), tap 2 of slots 0 and 1 as a pair, tap 2 of slot 2 in the high half with the
 * stage's shift r in the low byte, the stage's m2 and rounding term, and the bias. */
#define EQ_DW_RS 256 /* bytes per ring row that the assembly strips assume: 127 values */

typedef struct {
    const int16_t *p;     /* channel 0's ring: slot 0, value 0 (channel k: + 3k * EQ_DW_RS bytes) */
    int8_t *o;            /* output pixel 0 of the row, channel 0 */
    const uint32_t *cons; /* the strip words of channel 0 (8 a channel) for the row's rotation */
    int32_t span;         /* bytes a strip moves through its rows: out_w * stride_w * 2 */
    int32_t depth;        /* bytes between output pixels */
    int32_t offset;       /* output offset (EQ_RQ_RIGHT adds it after the shift) */
    int32_t odd;          /* out_w is odd */
    int32_t modes;        /* 2 bits a channel from bit 0: EQ_DWS_FOLDED, EQ_DWS_RIGHT, 3 (left to
                           * C), 0 after the last channel */
} eq_dwq_t;

/* A whole channel quad from planes: input rows r (input row r - pad_h) of the four channels
 * side by side, EQ_DWP_RS bytes each (channel k of row r at (4r + k) * EQ_DWP_RS bytes). */
#define EQ_DWP_RS 32 /* bytes per plane row: 15 values and the strips' one past */
typedef struct {
    const int16_t *p;     /* channel 0, plane row 0, value 0 */
    int8_t *o;            /* output pixel 0 of the image, channel 0 */
    const uint32_t *cons; /* the strip words of channel 0 (8 a channel) */
    int32_t span, depth, offset, odd, modes; /* as eq_dwq_t */
    int32_t row_step;     /* bytes from one output row's plane rows to the next's */
    int32_t chan_step;    /* bytes from channel to channel: EQ_DWP_RS */
    int32_t rows;         /* output rows */
} eq_dwp_t;

enum { EQ_DWS_C = 0, EQ_DWS_FOLDED = 1, EQ_DWS_RIGHT = 2, EQ_DWS_SKIP = 3 };
#if EQ_ASM
/* The 1x3 strips in assembly (eq_dwp1_s1/s2), each strip with r0 = row pointer, r2 W01 of the
 * filter row, r4 tap 2 (high half), r5 r (low byte), r6 m2, r7 the rounding term, r8 bias, r9
 * and r10 the accumulators of two neighbouring pixels (one starting, one finishing), r11
 * scratch, r12 the output pointer, lr the output step. */
#define EQ_DWS_STR(s) #s
#define EQ_DWS_X(s) EQ_DWS_STR(s)
/* the output stage of F (EQ_RQ_FOLDED: OFF empty; EQ_RQ_RIGHT: the offset added) */
#define EQ_DWS_OUT(F, OFF)                                        \
    "add     r11, " F ", r7\n\t"                                  \
    "add     r11, r11, " F ", asr #31\n\t"                        \
    "smmlar  r11, " F ", r6, r11\n\t"                             \
    "asr     r11, r11, r5\n\t"                                    \
    OFF                                                           \
    "ssat    r11, #8, r11\n\t"                                    \
    "strb    r11, [r12]\n\t"                                      \
    "add     r12, r12, lr\n\t"
#define EQ_DWS_OFF(F) "ldr     " F ", [sp, #24]\n\t" "add     r11, r11, " F "\n\t"
/* a 1x3 filter's one row (the middle one, slot 1: W01 in r2, tap 2 in r4's high half), the ring
 * pointer on that row */
#define EQ_DWP1_TAPS1(N, F)                                       \
    "ldr     r11, [r0, #2]!\n\t"                                  \
    "smlad   " N ", r11, r2, r8\n\t"                              \
    "smlatt  " F ", r11, r4, " F "\n\t"
#define EQ_DWP1_TAPS2(N, F)                                       \
    "ldr     r11, [r0, #4]!\n\t"                                  \
    "smlad   " N ", r11, r2, r8\n\t"                              \
    "smlabt  " F ", r11, r4, " F "\n\t"
#define EQ_DWP1_START(A) "ldr     r11, [r0]\n\t" "smlad   " A ", r11, r2, r8\n\t"
/* A whole channel quad in planes (eq_dwp_t): channel after channel, output row after output
 * row, the strip registers as above. Frame: [sp] the strip's end, [sp, #4] the row's start,
 * [sp, #8] rows left, [sp, #12] a copy of the eq_dwp_t. */
#define EQ_DWP_OFF(F) "ldr     " F ", [sp, #32]\n\t" "add     r11, r11, " F "\n\t"
#define EQ_DWP_ROWS(L, TAPS, START, OFF9, OFF10)                                            \
    L "0:\n\t"                                                                             \
    "ldr     r0, [sp, #4]\n\t"                                                              \
    "ldr     r11, [sp, #24]\n\t"                                                            \
    "add     r11, r0, r11\n\t"                                                              \
    "str     r11, [sp]\n\t"                                                                 \
    "ldr     r11, [sp, #36]\n\t"                                                            \
    "cmp     r11, #0\n\t"                                                                   \
    "bne     " L "3f\n\t"                                                                   \
    START("r9")                                                                             \
    L "1:\n\t"                                                                             \
    TAPS("r10", "r9") EQ_DWS_OUT("r9", OFF9)                                                \
    L "2:\n\t"                                                                             \
    TAPS("r9", "r10") EQ_DWS_OUT("r10", OFF10)                                              \
    "ldr     r11, [sp]\n\t"                                                                 \
    "cmp     r0, r11\n\t"                                                                   \
    "bne     " L "1b\n\t"                                                                   \
    "ldr     r11, [sp, #4]\n\t"                                                             \
    "ldr     r0, [sp, #44]\n\t"                                                             \
    "add     r11, r11, r0\n\t"                                                              \
    "str     r11, [sp, #4]\n\t"                                                             \
    "ldr     r11, [sp, #8]\n\t"                                                             \
    "subs    r11, r11, #1\n\t"                                                              \
    "str     r11, [sp, #8]\n\t"                                                             \
    "bne     " L "0b\n\t"                                                                   \
    "b       50f\n"                                                                         \
    L "3:\n\t"                                                                             \
    START("r10")                                                                            \
    "b       " L "2b\n"
#define EQ_DWP_FUNC(NAME, TAPS, START)                                                      \
    __asm__(EQ_ASM_FUNC_BEGIN(NAME)                                                         \
            "push    {r4-r11, lr}\n\t"                                                      \
            "sub     sp, sp, #60\n\t"                                                       \
            "ldmia   r0, {r1-r11}\n\t"                                                      \
            "add     r12, sp, #12\n\t"                                                      \
            "stmia   r12, {r1-r11}\n"                                                        \
            "40:\n\t"                                                                       \
            "ldr     r11, [sp, #40]\n\t"                                                    \
            "and     r10, r11, #3\n\t"                                                      \
            "lsr     r11, r11, #2\n\t"                                                      \
            "str     r11, [sp, #40]\n\t"                                                    \
            "cmp     r10, #0\n\t"                                                           \
            "beq     60f\n\t"                                                               \
            "cmp     r10, #3\n\t"                                                           \
            "beq     50f\n\t"                                                               \
            "ldr     r11, [sp, #12]\n\t"                                                    \
            "str     r11, [sp, #4]\n\t"                                                     \
            "ldr     r11, [sp, #52]\n\t"                                                    \
            "str     r11, [sp, #8]\n\t"                                                     \
            "ldr     r12, [sp, #16]\n\t"                                                    \
            "ldr     lr, [sp, #28]\n\t"                                                     \
            "ldr     r11, [sp, #20]\n\t"                                                    \
            "ldmia   r11, {r1-r8}\n\t"                                                      \
            "cmp     r10, #1\n\t"                                                           \
            "bne     30f\n\t"                                                               \
            EQ_DWP_ROWS("7", TAPS, START, "", "")                                           \
            "30:\n\t"                                                                       \
            EQ_DWP_ROWS("8", TAPS, START, EQ_DWP_OFF("r9"), EQ_DWP_OFF("r10"))              \
            "50:\n\t"                                                                       \
            "ldr     r0, [sp, #12]\n\t"                                                     \
            "ldr     r11, [sp, #48]\n\t"                                                    \
            "add     r0, r0, r11\n\t"                                                       \
            "str     r0, [sp, #12]\n\t"                                                     \
            "ldr     r0, [sp, #16]\n\t"                                                     \
            "add     r0, r0, #1\n\t"                                                        \
            "str     r0, [sp, #16]\n\t"                                                     \
            "ldr     r0, [sp, #20]\n\t"                                                     \
            "add     r0, r0, #32\n\t"                                                       \
            "str     r0, [sp, #20]\n\t"                                                     \
            "b       40b\n"                                                                 \
            "60:\n\t"                                                                       \
            "add     sp, sp, #60\n\t"                                                       \
            "pop     {r4-r11, pc}\n\t"                                                      \
            ".size " #NAME ", .-" #NAME "\n\t"                                              \
            ".text\n")
EQ_DWP_FUNC(eq_dwp1_s1, EQ_DWP1_TAPS1, EQ_DWP1_START);
EQ_DWP_FUNC(eq_dwp1_s2, EQ_DWP1_TAPS2, EQ_DWP1_START);
void eq_dwp1_s1(const eq_dwp_t *q);
void eq_dwp1_s2(const eq_dwp_t *q);
typedef char eq_dwp_layout_ok[(sizeof(void *) == 4 && sizeof(eq_dwp_t) == 44) ? 1 : -1];

/* The interior of a four-channel fill: `pairs` column pairs from src (columns `depth` bytes
 * apart) into the four channels' rows from r0 on, channel k at k * C bytes (C: 3 * EQ_DW_RS in
 * the ring, EQ_DWP_RS in planes). */
#define EQ_DW_FILL_ASM(NAME, C1, C2, C3)                                                    \
    EQ_INLINE void NAME(uint32_t *r0, const int8_t *src, int32_t depth, int32_t pairs,       \
                        uint32_t off2)                                                      \
    {                                                                                       \
        uint32_t va, vb, a02, a13, t;                                                       \
        const int8_t *end = src + 2 * depth * pairs;                                        \
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
            : [va] "=&r"(va), [vb] "=&r"(vb), [a02] "=&r"(a02), [a13] "=&r"(a13),           \
              [t] "=&r"(t), [src] "+r"(src), [r0] "+r"(r0)                                  \
            : [depth] "r"(depth), [off2] "r"(off2), [end] "r"(end)                          \
            : "cc", "memory");                                                              \
    }
EQ_DW_FILL_ASM(eq_dw_fill_asm, 3 * EQ_DW_RS, 6 * EQ_DW_RS, 9 * EQ_DW_RS)
EQ_DW_FILL_ASM(eq_dw_fill_asm_plane, EQ_DWP_RS, 2 * EQ_DWP_RS, 3 * EQ_DWP_RS)
#endif

/* For eq_depthwise_pairs.h: */
/* A word of two int16 values doubled (each half on its own: SADD16); the low halves of a and
 * b as one word (PKHBT), and their high halves (PKHTB). */
#if defined(__ARM_FEATURE_DSP) && !defined(EDGEQ_FAST_EMULATED)
EQ_INLINE uint32_t eq_dw_twice(uint32_t w)
{
    return (uint32_t)__sadd16((int32_t)w, (int32_t)w);
}
EQ_INLINE uint32_t eq_dw_pk_lo(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
EQ_INLINE uint32_t eq_dw_pk_hi(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm("pkhtb %0, %2, %1, asr #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#else
EQ_INLINE uint32_t eq_dw_twice(uint32_t w)
{
    return (w << 1) & 0xFFFEFFFFu;
}
EQ_INLINE uint32_t eq_dw_pk_lo(uint32_t a, uint32_t b)
{
    return (a & 0xFFFFu) | (b << 16);
}
EQ_INLINE uint32_t eq_dw_pk_hi(uint32_t a, uint32_t b)
{
    return (a >> 16) | (b & 0xFFFF0000u);
}
#endif

/* words words (a multiple of 4) from src to dst upwards (dst may overlap src from below). */
EQ_INLINE void eq_dw_copy(uint32_t *dst, const uint32_t *src, int32_t words)
{
#if EQ_ASM
    const uint32_t *end = src + words;
    __asm volatile("1:\n\t"
                   "ldmia   %[src]!, {r3-r6}\n\t"
                   "stmia   %[dst]!, {r3-r6}\n\t"
                   "cmp     %[src], %[end]\n\t"
                   "bne     1b\n\t"
                   : [src] "+r"(src), [dst] "+r"(dst)
                   : [end] "r"(end)
                   : "r3", "r4", "r5", "r6", "cc", "memory");
#else
    int32_t i;
    for (i = 0; i < words; ++i) {
        dst[i] = src[i];
    }
#endif
}

#endif /* EQ_FAST */

#endif /* EQ_DEPTHWISE_ASM_H */
