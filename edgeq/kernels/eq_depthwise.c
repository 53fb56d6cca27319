/* edgeq kernels: DEPTHWISE_CONV_2D (eq_depthwise_conv2d).
 *
 * Reference: reference_integer_ops::DepthwiseConvPerChannel, one output channel at one pixel
 * at a time, any depth multiplier, stride, dilation and padding.
 * Fast path (EQ_FAST, 3x3 or 1x3, depth multiplier 1, no dilation, a scratch): channel quad by
 * channel quad, output row by output row (a 1x3 filter as the middle row of a 3x3 one). The quad's input rows are copied once into a ring of three
 * rows per channel as int16 planes with the input offset added (the padding becomes 0), so
 * that one word load gives a channel's values at two neighbouring columns. Each channel's
 * output row is then one strip with its nine weights, bias and output stage in registers: per
 * output pixel and filter row one load, one SMLAD (taps 0 and 1) and one SMLAxy (tap 2 of the
 * pixel before, from the same word), then the exact SMMLAR output stage; in a hand-written
 * assembly function (EQ_ASM) for channels whose stage has the right-shift form and a whole
 * int8 clamp, in C otherwise.
 */
#include "eq_internal.h"

/* Short zeroing loops stay loops: GCC would turn them into memset calls, which cost more than
 * the few stores they replace. */
#if defined(__GNUC__) && !defined(__clang__)
#define EQ_NO_MEMSET __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define EQ_NO_MEMSET
#endif

static int32_t eq_depthwise_one(const eq_depthwise_t *p, const int8_t *in, int32_t b,
                                int32_t oy, int32_t ox, int32_t c);

#if EQ_FAST
/* ---- DEPTHWISE_CONV_2D 3x3, depth multiplier 1 ------------------------------------------------
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
/* One output row of a channel quad in assembly, channel after channel (eq_dwq_t), each strip
 * with r0 = ring pointer, r1-r3 W01 of slots 0-2, r4 tap 2 of slots 0/1, r5 tap 2 of slot 2
 * (high half) and r (low byte), r6 m2, r7 the rounding term, r8 bias, r9 and r10 the
 * accumulators of two neighbouring pixels (one starting, one finishing), r11 scratch, r12 the
 * output pointer, lr the output step. Frame: [sp] the strip's end, [sp, #4] a copy of the
 * eq_dwq_t (p, o, cons move on channel by channel, modes shifts down). */
#define EQ_DWS_STR(s) #s
#define EQ_DWS_X(s) EQ_DWS_STR(s)
#define EQ_DWS_RS1 EQ_DWS_X(EQ_DW_RS)
#define EQ_DWS_RS2 EQ_DWS_X(2 * EQ_DW_RS)
/* stride 1: P = (v[x], v[x+1]) starts pixel x (SMLAD) and ends pixel x - 1 (tap 2: v[x+1]) */
#define EQ_DW_TAPS1(N, F, R1, R2)                                 \
    "ldr     r11, [r0, #2]!\n\t"                                  \
    "smlad   " N ", r11, r1, r8\n\t"                              \
    "smlatb  " F ", r11, r4, " F "\n\t"                           \
    "ldr     r11, [r0, #" R1 "]\n\t"                              \
    "smlad   " N ", r11, r2, " N "\n\t"                           \
    "smlatt  " F ", r11, r4, " F "\n\t"                           \
    "ldr     r11, [r0, #" R2 "]\n\t"                              \
    "smlad   " N ", r11, r3, " N "\n\t"                           \
    "smlatt  " F ", r11, r5, " F "\n\t"
/* stride 2: P = (v[2x+2], v[2x+3]) starts pixel x + 1 and ends pixel x (tap 2: v[2x+2]) */
#define EQ_DW_TAPS2(N, F, R1, R2)                                 \
    "ldr     r11, [r0, #4]!\n\t"                                  \
    "smlad   " N ", r11, r1, r8\n\t"                              \
    "smlabb  " F ", r11, r4, " F "\n\t"                           \
    "ldr     r11, [r0, #" R1 "]\n\t"                              \
    "smlad   " N ", r11, r2, " N "\n\t"                           \
    "smlabt  " F ", r11, r4, " F "\n\t"                           \
    "ldr     r11, [r0, #" R2 "]\n\t"                              \
    "smlad   " N ", r11, r3, " N "\n\t"                           \
    "smlabt  " F ", r11, r5, " F "\n\t"
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
#define EQ_DW_START(A, R1, R2)                                                              \
    "ldr     r11, [r0]\n\t"                                                                 \
    "smlad   " A ", r11, r1, r8\n\t"                                                        \
    "ldr     r11, [r0, #" R1 "]\n\t"                                                        \
    "smlad   " A ", r11, r2, " A "\n\t"                                                     \
    "ldr     r11, [r0, #" R2 "]\n\t"                                                        \
    "smlad   " A ", r11, r3, " A "\n\t"
/* ring rows (EQ_DW_RS apart) and plane rows (EQ_DWP_RS apart) */
#define EQ_DWS_TAPS1(N, F) EQ_DW_TAPS1(N, F, EQ_DWS_RS1, EQ_DWS_RS2)
#define EQ_DWS_TAPS2(N, F) EQ_DW_TAPS2(N, F, EQ_DWS_RS1, EQ_DWS_RS2)
#define EQ_DWS_START(A) EQ_DW_START(A, EQ_DWS_RS1, EQ_DWS_RS2)
#define EQ_DWP_R1 EQ_DWS_X(4 * EQ_DWP_RS) /* the next plane row: four channels on */
#define EQ_DWP_R2 EQ_DWS_X(8 * EQ_DWP_RS)
#define EQ_DWP_TAPS1(N, F) EQ_DW_TAPS1(N, F, EQ_DWP_R1, EQ_DWP_R2)
#define EQ_DWP_TAPS2(N, F) EQ_DW_TAPS2(N, F, EQ_DWP_R1, EQ_DWP_R2)
#define EQ_DWP_START(A) EQ_DW_START(A, EQ_DWP_R1, EQ_DWP_R2)
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
/* the strip loop of one channel (L: label base), ending with a branch to the next channel */
#define EQ_DWS_STRIP(L, TAPS, OFF9, OFF10)                                                  \
    "cmp     r11, #0\n\t"                                                                   \
    "bne     " L "3f\n\t"                                                                   \
    EQ_DWS_START("r9")                                                                      \
    L "1:\n\t"                                                                              \
    TAPS("r10", "r9") EQ_DWS_OUT("r9", OFF9)                                                \
    L "2:\n\t"                                                                              \
    TAPS("r9", "r10") EQ_DWS_OUT("r10", OFF10)                                              \
    "ldr     r11, [sp]\n\t"                                                                 \
    "cmp     r0, r11\n\t"                                                                   \
    "bne     " L "1b\n\t"                                                                   \
    "b       50f\n"                                                                         \
    L "3:\n\t"                                                                              \
    EQ_DWS_START("r10")                                                                     \
    "b       " L "2b\n"
#define EQ_DWS_FUNC(NAME, TAPS)                                                             \
    __asm__(".syntax unified\n\t"                                                           \
            ".section .text." #NAME ",\"ax\",%progbits\n\t"                                 \
            ".balign 4\n\t"                                                                 \
            ".global " #NAME "\n\t"                                                         \
            ".hidden " #NAME "\n\t"                                                         \
            ".thumb\n\t"                                                                    \
            ".thumb_func\n\t"                                                               \
            ".type " #NAME ", %function\n"                                                  \
            #NAME ":\n\t"                                                                   \
            "push    {r4-r11, lr}\n\t"                                                      \
            "sub     sp, sp, #36\n\t"                                                       \
            "ldmia   r0, {r1-r8}\n\t"                                                       \
            "add     r11, sp, #4\n\t"                                                       \
            "stmia   r11, {r1-r8}\n"                                                        \
            "40:\n\t" /* next channel */                                                    \
            "ldr     r11, [sp, #32]\n\t"                                                    \
            "and     r10, r11, #3\n\t"                                                      \
            "lsr     r11, r11, #2\n\t"                                                      \
            "str     r11, [sp, #32]\n\t"                                                    \
            "cmp     r10, #0\n\t"                                                           \
            "beq     60f\n\t"                                                               \
            "cmp     r10, #3\n\t"                                                           \
            "beq     50f\n\t"                                                               \
            "ldr     r0, [sp, #4]\n\t"                                                      \
            "ldr     r11, [sp, #16]\n\t"                                                    \
            "add     r11, r0, r11\n\t"                                                      \
            "str     r11, [sp]\n\t"                                                         \
            "ldr     r12, [sp, #8]\n\t"                                                     \
            "ldr     lr, [sp, #20]\n\t"                                                     \
            "ldr     r11, [sp, #12]\n\t"                                                    \
            "ldmia   r11, {r1-r8}\n\t"                                                      \
            "ldr     r11, [sp, #28]\n\t"                                                    \
            "cmp     r10, #1\n\t"                                                           \
            "bne     20f\n\t"                                                               \
            EQ_DWS_STRIP("1", TAPS, "", "")                                                 \
            "20:\n\t"                                                                       \
            EQ_DWS_STRIP("2", TAPS, EQ_DWS_OFF("r9"), EQ_DWS_OFF("r10"))                    \
            "50:\n\t" /* the channel done or left to C */                                   \
            "ldr     r0, [sp, #4]\n\t"                                                      \
            "add     r0, r0, #" EQ_DWS_X(3 * EQ_DW_RS) "\n\t"                               \
            "str     r0, [sp, #4]\n\t"                                                      \
            "ldr     r0, [sp, #8]\n\t"                                                      \
            "add     r0, r0, #1\n\t"                                                        \
            "str     r0, [sp, #8]\n\t"                                                      \
            "ldr     r0, [sp, #12]\n\t"                                                     \
            "add     r0, r0, #32\n\t"                                                       \
            "str     r0, [sp, #12]\n\t"                                                     \
            "b       40b\n"                                                                 \
            "60:\n\t"                                                                       \
            "add     sp, sp, #36\n\t"                                                       \
            "pop     {r4-r11, pc}\n\t"                                                      \
            ".size " #NAME ", .-" #NAME "\n\t"                                              \
            ".text\n")
EQ_DWS_FUNC(eq_dwq_s1, EQ_DWS_TAPS1);
EQ_DWS_FUNC(eq_dwq_s2, EQ_DWS_TAPS2);
void eq_dwq_s1(const eq_dwq_t *q);
void eq_dwq_s2(const eq_dwq_t *q);
typedef char eq_dwq_layout_ok[(sizeof(void *) == 4 && sizeof(eq_dwq_t) == 32) ? 1 : -1];

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
    __asm__(".syntax unified\n\t"                                                           \
            ".section .text." #NAME ",\"ax\",%progbits\n\t"                                 \
            ".balign 4\n\t"                                                                 \
            ".global " #NAME "\n\t"                                                         \
            ".hidden " #NAME "\n\t"                                                         \
            ".thumb\n\t"                                                                    \
            ".thumb_func\n\t"                                                               \
            ".type " #NAME ", %function\n"                                                  \
            #NAME ":\n\t"                                                                   \
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
EQ_DWP_FUNC(eq_dwp_s1, EQ_DWP_TAPS1, EQ_DWP_START);
EQ_DWP_FUNC(eq_dwp_s2, EQ_DWP_TAPS2, EQ_DWP_START);
EQ_DWP_FUNC(eq_dwp1_s1, EQ_DWP1_TAPS1, EQ_DWP1_START);
EQ_DWP_FUNC(eq_dwp1_s2, EQ_DWP1_TAPS2, EQ_DWP1_START);
void eq_dwp_s1(const eq_dwp_t *q);
void eq_dwp_s2(const eq_dwp_t *q);
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
 * rows, then the prepared strips), then the whole quad in one eq_dwp_s1/s2 call (assembly; the
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
            if (left < nch && p->filter_h == 1) { /* only the middle plane rows */
                q.p = plane + lead + 2 * EQ_DWP_RS;
                (p->stride_w == 1 ? eq_dwp1_s1 : eq_dwp1_s2)(&q);
            } else if (left < nch) {
                (p->stride_w == 1 ? eq_dwp_s1 : eq_dwp_s2)(&q);
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
 * row: the new input rows into the ring, then the quad's strips (eq_dwq_s1/s2 in assembly,
 * the channels it leaves, or all without EQ_ASM, eq_dw_strip_c). */
static void eq_depthwise3x3_fast(const eq_depthwise_t *p, const int8_t *in, int8_t *out,
                                 int8_t *scratch)
{
    const int32_t depth = p->in_c, out_h = p->out_h, out_w = p->out_w;
    const int32_t width = (out_w - 1) * p->stride_w + 3;
    const int32_t count = (width + 2) & ~1; /* the strips read one value past the row */
    const int32_t lead = p->pad_w & 1; /* ring positions are columns + lead */
    const int32_t rs = 2 * (count + lead) <= EQ_DW_RS ? EQ_DW_RS
                       : (2 * (count + lead) + 3) & ~3;
    const int asm_ok = EQ_ASM && (rs == EQ_DW_RS || p->filter_h == 1)
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
                if (left < nch && p->filter_h == 1) {
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
                    (p->stride_w == 1 ? eq_dwp1_s1 : eq_dwp1_s2)(&q1);
                } else if (left < nch) {
                    q.o = o;
                    q.cons = strips + 4 * m * 8;
                    (p->stride_w == 1 ? eq_dwq_s1 : eq_dwq_s2)(&q);
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

#if EQ_FAST
/* ---- DEPTHWISE_CONV_2D 3x3, narrow outputs: channel quads pixel by pixel --------------------
 * For output rows narrower than EQ_DW_WIDE pixels (eq_dw_wide). Four channels at a time over the whole image, from a ring of three input rows copied into the
 * scratch with the padding filled in (the input zero point), so that every pixel takes the same
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

void eq_depthwise_conv2d(const eq_depthwise_t *p, const int8_t *in, int8_t *out,
                         int8_t *scratch)
{
    int32_t b, oy, ox, oc;
#if EQ_FAST
    if (scratch != NULL && p->depth_multiplier == 1 && (p->filter_h == 3 || p->filter_h == 1)
        && p->filter_w == 3 && p->dilation_h == 1 && p->dilation_w == 1) {
        if (eq_dw_planes_fit(p)) {
            eq_depthwise3x3_planes(p, in, out, scratch);
        } else if (p->filter_h == 1 || eq_dw_wide(p)) {
            eq_depthwise3x3_fast(p, in, out, scratch);
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
