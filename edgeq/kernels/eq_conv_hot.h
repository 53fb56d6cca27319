/* edgeq kernels, private to eq_conv.c: a block's hot output channels in assembly.
 *
 * eq_conv6_hot (int8 weights), eq_conv6_hot_wide (weights stored as int16 pairs) and
 * eq_conv3_hot (blocks of at most three pixels), eq_conv6_r7_wide (int16 pairs, seven runs a
 * filter row): the dot products of eq_conv_dot.h and the
 * exact SMMLAR output stage for every channel of a block whose stage is EQ_RQ_FOLDED or
 * EQ_RQ_RIGHT, as whole assembly functions so that the columns come in by LDM (the register
 * lists need fixed registers). Only with EQ_ASM.
 */
#ifndef EQ_CONV_HOT_H
#define EQ_CONV_HOT_H

#include "eq_internal.h"

#if EQ_FAST
#if EQ_ASM
/* ---- A block's run of hot int8 channels in one assembly function -------------------------------
 * (eq_conv6_hot_wide: the same for weights stored as int16 pairs, one LDRD a run: 16 per 24)
 * eq_conv6_hot: output channels from s->q on, while their stage is EQ_RQ_FOLDED or
 * EQ_RQ_RIGHT (the first other one, or the end, stops it), for a block of EQ_COLS pixels with
 * a whole int8 clamp: per channel the six accumulators start from the bias, then per run one
 * weight word sign-extended by SXTB16 and the six columns' twelve words in three LDMs (18
 * instructions per 24 MACs, against 21 with LDRDs), then the exact SMMLAR stage and the six
 * stores. Weights of successive channels are contiguous (filter_stride bytes each). On
 * return q, dst and w name the first channel not done. */
typedef struct {
    const eq_rqc_t *q;    /* the channel's prepared stage */
    const eq_rqc_t *end;  /* one past the last output channel */
    int8_t *dst;          /* the channel's output at the block's first pixel */
    const int8_t *w;      /* the channel's weights */
    const int16_t *cols;  /* the block's columns */
    int32_t runs;         /* runs of 4 values per filter row, at least 1 */
    int32_t stride;       /* bytes between output pixels (out_c) */
    int32_t n;            /* the block's pixels (eq_conv3_hot: 1 to 3) */
} eq_conv6_t;

/* registers: r0-r5 the accumulators of pixels 0-5, r6/r7 the weight pairs (w0 w2) (w1 w3),
 * r8-r11 two pixels' columns, r12 the columns, lr the weights */
/* the weight pairs of one run: int8 sign-extended, or stored as int16 pairs (weight_bits 16) */
#define EQ_C6_W8                                    \
    "ldr     r7, [lr], #4\n\t"                      \
    "ldmia   r12!, {r8-r11}\n\t"                    \
    "sxtb16  r6, r7\n\t"                            \
    "sxtb16  r7, r7, ror #8\n\t"
#define EQ_C6_W16                                   \
    "ldrd    r6, r7, [lr], #8\n\t"                  \
    "ldmia   r12!, {r8-r11}\n\t"
#define EQ_C6_RUN(W)                                \
    W                                               \
    "smlad   r0, r8, r6, r0\n\t"                    \
    "smlad   r0, r9, r7, r0\n\t"                    \
    "smlad   r1, r10, r6, r1\n\t"                   \
    "smlad   r1, r11, r7, r1\n\t"                   \
    "ldmia   r12!, {r8-r11}\n\t"                    \
    "smlad   r2, r8, r6, r2\n\t"                    \
    "smlad   r2, r9, r7, r2\n\t"                    \
    "smlad   r3, r10, r6, r3\n\t"                   \
    "smlad   r3, r11, r7, r3\n\t"                   \
    "ldmia   r12!, {r8-r11}\n\t"                    \
    "smlad   r4, r8, r6, r4\n\t"                    \
    "smlad   r4, r9, r7, r4\n\t"                    \
    "smlad   r5, r10, r6, r5\n\t"                   \
    "smlad   r5, r11, r7, r5\n\t"
/* the first run: every accumulator from the bias in r0 (pixel 0 last) */
#define EQ_C6_PIX(A)                                \
    "ldrd    r10, r11, [r12], #8\n\t"               \
    "smlad   " A ", r10, r6, r0\n\t"                \
    "smlad   " A ", r11, r7, " A "\n\t"
#define EQ_C6_FIRST(W)                              \
    W                                               \
    "smlad   r1, r10, r6, r0\n\t"                   \
    "smlad   r1, r11, r7, r1\n\t"                   \
    EQ_C6_PIX("r2") EQ_C6_PIX("r3") EQ_C6_PIX("r4") EQ_C6_PIX("r5") \
    "smlad   r0, r8, r6, r0\n\t"                    \
    "smlad   r0, r9, r7, r0\n\t"
/* the stage of accumulator A: m2 r6, rounding term r7, r r8, value r9, output r11, stride
 * r10; OFF adds the offset (lr) for EQ_RQ_RIGHT */
#define EQ_C6_OUT(A, OFF, STORE)                    \
    "add     r9, " A ", r7\n\t"                     \
    "add     r9, r9, " A ", asr #31\n\t"            \
    "smmlar  r9, " A ", r6, r9\n\t"                 \
    "asr     r9, r9, r8\n\t"                        \
    OFF                                             \
    "ssat    r9, #8, r9\n\t"                        \
    STORE "\n\t"
#define EQ_C6_STAGE(OFF)                                                        \
    EQ_C6_OUT("r0", OFF, "strb    r9, [r11]")                                   \
    EQ_C6_OUT("r1", OFF, "strb    r9, [r11, r10]")                              \
    "add     r11, r11, r10, lsl #1\n\t"                                         \
    EQ_C6_OUT("r2", OFF, "strb    r9, [r11]")                                   \
    EQ_C6_OUT("r3", OFF, "strb    r9, [r11, r10]")                              \
    "add     r11, r11, r10, lsl #1\n\t"                                         \
    EQ_C6_OUT("r4", OFF, "strb    r9, [r11]")                                   \
    EQ_C6_OUT("r5", OFF, "strb    r9, [r11, r10]")
/* the eight-run loop's entry for (runs - 1) mod 8 == K: label 6K into r8 */
#define EQ_C6_ENTRY(K)                              \
    "cmp     r6, #" K "\n\t"                        \
    "bne     7" K "f\n\t"                           \
    "adr     r8, 6" K "f\n"                          \
    "7" K ":\n\t"
/* frame: [sp] stride, [sp, #4] dst, [sp, #8] q (one LDM), [sp, #12] the columns' end (a run
 * reads 48 bytes of them: the runs' end test for every channel), [sp, #16] cols, [sp, #24]
 * where the eight-run loop is entered (runs - 1 mod 8 runs before its first test), [sp, #28]
 * s, [sp, #32] end */
/* a channel done: the next channel's dst and q into the frame, the stage's multiplier, bias
 * and kind loaded */
#define EQ_C6_NEXT                                                              \
    "ldmia   sp, {r10-r12}\n\t" /* stride dst q */                              \
    "add     r9, r11, #1\n\t" /* the next channel's dst and q */                \
    "str     r9, [sp, #4]\n\t"                                                  \
    "add     r9, r12, #16\n\t"                                                  \
    "str     r9, [sp, #8]\n\t"                                                  \
    "ldrd    r6, r7, [r12, #4]\n\t"                                             \
    "ldrb    r8, [r12, #13]\n\t"

/* a channel's kind: on to its dot product when EQ_RQ_FOLDED or EQ_RQ_RIGHT, else out */
#define EQ_C6_KIND                                                                              \
        "ldrb    r3, [r1, #12]\n\t"                                                             \
        "cmp     r3, #4\n\t" /* EQ_RQ_FOLDED */                                                 \
        "beq     11f\n\t"                                                                       \
        "cmp     r3, #2\n\t" /* EQ_RQ_RIGHT */                                                  \
        "bne     90f\n"                                                                         \
        "11:\n\t"
/* the stage of the channel's kind (r12 its q), then the next channel */
#define EQ_C6_STAGES                                                                            \
        "ldrb    r9, [r12, #12]\n\t"                                                            \
        "cmp     r9, #4\n\t"                                                                    \
        "bne     30f\n\t"                                                                       \
        EQ_C6_STAGE("") /* lr, the next channel's weights, kept */                              \
        "ldr     r1, [sp, #8]\n\t"                                                              \
        "b       10b\n"                                                                         \
        "30:\n\t" /* the offset into r12 (q no longer needed), lr kept */                       \
        "ldrsh   r12, [r12, #14]\n\t"                                                           \
        EQ_C6_STAGE("add     r9, r9, r12\n\t")                                                  \
        "ldr     r1, [sp, #8]\n\t"                                                              \
        "b       10b\n"
/* every channel EQ_RQ_FOLDED (eq_conv6_hot_folded): no kind tests */
#define EQ_C6_STAGE_FOLDED                                                                      \
        EQ_C6_STAGE("")                                                                         \
        "ldr     r1, [sp, #8]\n\t"                                                              \
        "b       10b\n"
#define EQ_C6_FUNC(NAME, W, KIND, STAGES)                                                       \
    __asm__(EQ_ASM_FUNC_BEGIN(NAME)                                                             \
        "push    {r4-r11, lr}\n\t"                                                              \
        "sub     sp, sp, #36\n\t"                                                               \
        "str     r0, [sp, #28]\n\t"                                                             \
        "ldmia   r0, {r1-r7}\n\t" /* q end dst w cols runs stride */                            \
        "str     r7, [sp]\n\t"                                                                  \
        "str     r3, [sp, #4]\n\t"                                                              \
        "str     r1, [sp, #8]\n\t"                                                              \
        "str     r5, [sp, #16]\n\t"                                                             \
        "str     r2, [sp, #32]\n\t"                                                             \
        "add     r8, r6, r6, lsl #1\n\t"                                                        \
        "add     r8, r5, r8, lsl #4\n\t" /* cols + 48 runs: where the runs end */              \
        "str     r8, [sp, #12]\n\t"                                                             \
        "sub     r6, r6, #1\n\t"                                                                \
        "and     r6, r6, #7\n\t"                                                                \
        "adr     r8, 60f\n\t"                                                                   \
        EQ_C6_ENTRY("1") EQ_C6_ENTRY("2") EQ_C6_ENTRY("3") EQ_C6_ENTRY("4")                     \
        EQ_C6_ENTRY("5") EQ_C6_ENTRY("6") EQ_C6_ENTRY("7")                                      \
        "orr     r8, r8, #1\n\t" /* Thumb */                                                    \
        "str     r8, [sp, #24]\n\t"                                                             \
        "mov     lr, r4\n"                                                                      \
        "10:\n\t" /* a channel: r1 q, lr its weights */                                         \
        "ldr     r2, [sp, #32]\n\t"                                                             \
        "cmp     r1, r2\n\t"                                                                    \
        "beq     90f\n\t"                                                                       \
        KIND                                                                                    \
        "ldr     r0, [r1]\n\t"                                                                  \
        "ldr     r12, [sp, #16]\n\t"                                                            \
        EQ_C6_FIRST(W)                                                                          \
        "ldr     pc, [sp, #24]\n"                                                               \
        ".balign 4\n"                                                                           \
        "1:\n\t"                                                                                \
        EQ_C6_RUN(W)                                                                            \
        "67:\n\t"                                                                               \
        EQ_C6_RUN(W)                                                                            \
        "66:\n\t"                                                                               \
        EQ_C6_RUN(W)                                                                            \
        "65:\n\t"                                                                               \
        EQ_C6_RUN(W)                                                                            \
        "64:\n\t"                                                                               \
        EQ_C6_RUN(W)                                                                            \
        "63:\n\t"                                                                               \
        EQ_C6_RUN(W)                                                                            \
        "62:\n\t"                                                                               \
        EQ_C6_RUN(W)                                                                            \
        "61:\n\t"                                                                               \
        EQ_C6_RUN(W)                                                                            \
        "60:\n\t"                                                                               \
        "ldr     r8, [sp, #12]\n\t"                                                             \
        "cmp     r12, r8\n\t"                                                                   \
        "bne     1b\n\t"                                                                        \
        EQ_C6_NEXT                                                                              \
        STAGES                                                                                  \
        "90:\n\t" /* q, dst, w of the first channel not done back into s */                     \
        "ldr     r0, [sp, #28]\n\t"                                                             \
        "ldr     r3, [sp, #4]\n\t"                                                              \
        "str     r1, [r0]\n\t"                                                                  \
        "str     r3, [r0, #8]\n\t"                                                              \
        "str     lr, [r0, #12]\n\t"                                                             \
        "add     sp, sp, #36\n\t"                                                               \
        "pop     {r4-r11, pc}\n\t"                                                              \
        ".size " #NAME ", .-" #NAME "\n\t"                                                      \
        ".text\n")
EQ_C6_FUNC(eq_conv6_hot, EQ_C6_W8, EQ_C6_KIND, EQ_C6_STAGES);
EQ_C6_FUNC(eq_conv6_hot_folded, EQ_C6_W8, "", EQ_C6_STAGE_FOLDED);
EQ_C6_FUNC(eq_conv6_hot_wide, EQ_C6_W16, EQ_C6_KIND, EQ_C6_STAGES);
void eq_conv6_hot(eq_conv6_t *s);
void eq_conv6_hot_folded(eq_conv6_t *s); /* every channel EQ_RQ_FOLDED */
void eq_conv6_hot_wide(eq_conv6_t *s); /* weights stored as int16 pairs */

/* eq_conv6_r7_wide: eq_conv6_hot_wide for filter rows of seven runs (a 3x3 filter over three
 * channels), the runs unrolled and each stage kind's channel code of its own: an EQ_RQ_FOLDED
 * channel costs 16 instructions besides its dot product and stage (12 in eq_conv6_r7_folded,
 * about 30 in eq_conv6_hot_wide).
 * frame: [sp] stride, [sp, #4] dst, [sp, #8] q, [sp, #12] end (one LDM, one LDRD), [sp, #16]
 * cols, [sp, #20] s. */
#define EQ_R7_DOT                                                               \
    "ldr     r0, [r12]\n\t"                                                     \
    "ldr     r12, [sp, #16]\n\t"                                                \
    EQ_C6_FIRST(EQ_C6_W16)                                                      \
    EQ_C6_RUN(EQ_C6_W16) EQ_C6_RUN(EQ_C6_W16) EQ_C6_RUN(EQ_C6_W16)              \
    EQ_C6_RUN(EQ_C6_W16) EQ_C6_RUN(EQ_C6_W16) EQ_C6_RUN(EQ_C6_W16)              \
    EQ_C6_NEXT
#define EQ_R7_ENTER                                                             \
        "push    {r4-r11, lr}\n\t"                                              \
        "sub     sp, sp, #28\n\t"                                               \
        "str     r0, [sp, #20]\n\t"                                             \
        "ldmia   r0, {r1-r7}\n\t" /* q end dst w cols runs stride */            \
        "str     r7, [sp]\n\t"                                                  \
        "str     r3, [sp, #4]\n\t"                                              \
        "str     r1, [sp, #8]\n\t"                                              \
        "str     r2, [sp, #12]\n\t"                                             \
        "str     r5, [sp, #16]\n\t"                                             \
        "mov     lr, r4\n\t"                                                    \
        "mov     r12, r1\n\t"                                                   \
        "cmp     r12, r2\n\t"                                                   \
        "beq     90f\n"
/* the next channel (r12 q, r2 end), else q, dst, w of the first channel not done into s */
#define EQ_R7_LEAVE                                                             \
        "50:\n\t"                                                               \
        "ldrd    r12, r2, [sp, #8]\n\t" /* q end */                             \
        "cmp     r12, r2\n\t"                                                   \
        "bne     10b\n"                                                         \
        "90:\n\t"                                                               \
        "ldr     r0, [sp, #20]\n\t"                                             \
        "ldr     r3, [sp, #4]\n\t"                                              \
        "str     r12, [r0]\n\t"                                                 \
        "str     r3, [r0, #8]\n\t"                                              \
        "str     lr, [r0, #12]\n\t"                                             \
        "add     sp, sp, #28\n\t"                                               \
        "pop     {r4-r11, pc}\n\t"
__asm__(EQ_ASM_FUNC_BEGIN(eq_conv6_r7_wide)
        EQ_R7_ENTER
        "10:\n\t" /* a channel: r12 q (not the end), lr its weights */
        "ldrb    r3, [r12, #12]\n\t"
        "cmp     r3, #4\n\t" /* EQ_RQ_FOLDED */
        "bne     20f\n\t"
        EQ_R7_DOT
        EQ_C6_STAGE("")
        "b       50f\n"
        "20:\n\t"
        "cmp     r3, #2\n\t" /* EQ_RQ_RIGHT */
        "bne     90f\n\t"
        EQ_R7_DOT
        "ldrsh   r12, [r12, #14]\n\t" /* the offset (q reloaded by EQ_R7_LEAVE), lr kept */
        EQ_C6_STAGE("add     r9, r9, r12\n\t")
        EQ_R7_LEAVE
        ".size eq_conv6_r7_wide, .-eq_conv6_r7_wide\n\t"
        ".text\n");
/* eq_conv6_r7_folded: the same when every channel's stage is EQ_RQ_FOLDED (no kind tests) */
__asm__(EQ_ASM_FUNC_BEGIN(eq_conv6_r7_folded)
        EQ_R7_ENTER
        "10:\n\t"
        EQ_R7_DOT
        EQ_C6_STAGE("")
        EQ_R7_LEAVE
        ".size eq_conv6_r7_folded, .-eq_conv6_r7_folded\n\t"
        ".text\n");
void eq_conv6_r7_folded(eq_conv6_t *s);
void eq_conv6_r7_wide(eq_conv6_t *s);

/* eq_conv3_hot: the same for a block of n <= 3 pixels (columns 0-2 of each run; the missing
 * ones repeat the last pixel, so computing three and storing n is exact): per run one weight
 * word, two SXTB16, an LDM and a post-indexed LDRD of the columns, six SMLADs (11
 * instructions per 12 MACs). Registers: r0-r2 the accumulators, r3 the channel's weight end,
 * r4 stride, r5 n, r6/r7 the weight pairs, r8-r11 columns, r12 the columns, lr the weights. */
#define EQ_C3_RUN                                   \
    "ldr     r7, [lr], #4\n\t"                      \
    "ldmia   r12!, {r8-r11}\n\t"                    \
    "sxtb16  r6, r7\n\t"                            \
    "sxtb16  r7, r7, ror #8\n\t"                    \
    "smlad   r0, r8, r6, r0\n\t"                    \
    "smlad   r0, r9, r7, r0\n\t"                    \
    "ldrd    r8, r9, [r12], #32\n\t" /* on to the next run */ \
    "smlad   r1, r10, r6, r1\n\t"                   \
    "smlad   r1, r11, r7, r1\n\t"                   \
    "smlad   r2, r8, r6, r2\n\t"                    \
    "smlad   r2, r9, r7, r2\n\t"
/* the stage of the three accumulators, n of them stored (output r10, stride r4) */
#define EQ_C3_STAGE(OFF)                                                        \
    EQ_C6_OUT("r0", OFF, "strb    r9, [r10]")                                   \
    "cmp     r5, #2\n\t"                                                        \
    "blt     40f\n\t"                                                           \
    EQ_C6_OUT("r1", OFF, "strb    r9, [r10, r4]")                               \
    "cmp     r5, #3\n\t"                                                        \
    "blt     40f\n\t"                                                           \
    "add     r10, r10, r4, lsl #1\n\t"                                          \
    EQ_C6_OUT("r2", OFF, "strb    r9, [r10]")
/* frame: [sp] q, [sp, #4] dst, [sp, #8] end, [sp, #12] cols, [sp, #16] 4 * runs, [sp, #20]
 * where the four-run loop is entered (runs mod 4 runs before its first test), [sp, #24] s */
__asm__(EQ_ASM_FUNC_BEGIN(eq_conv3_hot)
        "push    {r4-r11, lr}\n\t"
        "sub     sp, sp, #28\n\t"
        "str     r0, [sp, #24]\n\t"
        "ldr     r5, [r0, #28]\n\t" /* n */
        "ldmia   r0, {r1-r4, r6-r8}\n\t" /* q end dst w cols runs stride */
        "str     r1, [sp]\n\t"
        "str     r3, [sp, #4]\n\t"
        "str     r2, [sp, #8]\n\t"
        "str     r6, [sp, #12]\n\t"
        "mov     lr, r4\n\t"
        "mov     r4, r8\n\t"
        "lsl     r8, r7, #2\n\t"
        "str     r8, [sp, #16]\n\t"
        "and     r7, r7, #3\n\t"
        "adr     r8, 60f\n\t"
        "cmp     r7, #1\n\t"
        "bne     5f\n\t"
        "adr     r8, 61f\n"
        "5:\n\t"
        "cmp     r7, #2\n\t"
        "bne     6f\n\t"
        "adr     r8, 62f\n"
        "6:\n\t"
        "cmp     r7, #3\n\t"
        "bne     7f\n\t"
        "adr     r8, 63f\n"
        "7:\n\t"
        "orr     r8, r8, #1\n\t" /* Thumb */
        "str     r8, [sp, #20]\n"
        "10:\n\t" /* a channel: r1 q, lr its weights */
        "ldr     r2, [sp, #8]\n\t"
        "cmp     r1, r2\n\t"
        "beq     90f\n\t"
        "ldrb    r3, [r1, #12]\n\t"
        "cmp     r3, #4\n\t" /* EQ_RQ_FOLDED */
        "beq     11f\n\t"
        "cmp     r3, #2\n\t" /* EQ_RQ_RIGHT */
        "bne     90f\n"
        "11:\n\t"
        "ldr     r0, [r1]\n\t"
        "mov     r1, r0\n\t"
        "mov     r2, r0\n\t"
        "ldr     r12, [sp, #12]\n\t"
        "ldr     r3, [sp, #16]\n\t"
        "add     r3, lr, r3\n\t"
        "ldr     pc, [sp, #20]\n"
        ".balign 4\n"
        "1:\n\t"
        EQ_C3_RUN
        "63:\n\t"
        EQ_C3_RUN
        "62:\n\t"
        EQ_C3_RUN
        "61:\n\t"
        EQ_C3_RUN
        "60:\n\t"
        "cmp     lr, r3\n\t"
        "bne     1b\n\t"
        "ldr     r12, [sp]\n\t"
        "ldr     r10, [sp, #4]\n\t"
        "add     r9, r10, #1\n\t" /* the next channel's dst and q */
        "str     r9, [sp, #4]\n\t"
        "add     r9, r12, #16\n\t"
        "str     r9, [sp]\n\t"
        "ldrd    r6, r7, [r12, #4]\n\t"
        "ldrb    r8, [r12, #13]\n\t"
        "ldrb    r9, [r12, #12]\n\t"
        "cmp     r9, #4\n\t"
        "bne     30f\n\t"
        EQ_C3_STAGE("")
        "b       40f\n"
        "30:\n\t"
        "ldrsh   r11, [r12, #14]\n\t"
        EQ_C3_STAGE("add     r9, r9, r11\n\t")
        "40:\n\t"
        "ldr     r1, [sp]\n\t"
        "b       10b\n"
        "90:\n\t" /* q, dst, w of the first channel not done back into s */
        "ldr     r0, [sp, #24]\n\t"
        "ldr     r3, [sp, #4]\n\t"
        "str     r1, [r0]\n\t"
        "str     r3, [r0, #8]\n\t"
        "str     lr, [r0, #12]\n\t"
        "add     sp, sp, #28\n\t"
        "pop     {r4-r11, pc}\n\t"
        ".size eq_conv3_hot, .-eq_conv3_hot\n\t"
        ".text\n");
void eq_conv3_hot(eq_conv6_t *s);
typedef char eq_conv6_layout_ok[(sizeof(void *) == 4 && sizeof(eq_conv6_t) == 32
                                 && sizeof(eq_rqc_t) == 16) ? 1 : -1];
#endif

#endif /* EQ_FAST */

#endif /* EQ_CONV_HOT_H */
