/* edgeq kernels, private to eq_depthwise.c (through eq_depthwise_pairs.h): the assembly of
 * the 3x3 depthwise pairs. eq_dw_run_s1/s2 and their _m and _n variants run a band of a
 * channel quad from its int16 planes, two outputs at a time, preparing each channel's stage
 * themselves; eq_dw_fill_all_* fill the planes of rows taken whole. The plane row sizes they
 * assume are here. Only with EQ_FAST; the assembly with EQ_ASM.
 */
#ifndef EQ_DEPTHWISE_RUN_H
#define EQ_DEPTHWISE_RUN_H

#include "eq_internal.h"
#include "eq_depthwise_asm.h"

#define EQ_DW_PR 124 /* bytes per plane row when the row fits: 2 * 496 fits LDRD's offset */
#define EQ_DW_PRM 64 /* the same for rows of at most 32 values (longer bands) */
#define EQ_DW_PRN 32 /* the same for rows of at most 16 values (less scratch) */

#if EQ_ASM
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

/* A band of the quad's channels in assembly (eq_dw_run_s1/s2; plane rows 4 * EQ_DW_PR bytes
 * apart, the _m and _n functions 4 * EQ_DW_PRM and 4 * EQ_DW_PRN). Channel by channel, the
 * assembly reads the channel's bias, M and shift from the unpacked arrays (the clamp, the
 * whole int8 range, tested by the caller) and takes it in mode 2 (eq_dw_pair_prepare's test;
 * add = (2 offset + 1) << (r - 1)) or, M >= 2^30, with a left shift l = shift of 0 to 7 and
 * |bias| < 2^22 (EQ_DWA_PAIR_L), the bias doubled (the weights come doubled); else it sets
 * the channel's bit in the mask it returns and leaves it to C. Rows: r0 the plane pointer,
 * r1-r6 the weight pairs, r7 and r8 the two outputs' accumulators, r9-r11 words and the
 * stage's temporaries, r12 the output pointer, lr the end of the row's pairs (the next
 * row's: plus the pitch). Frame: [sp] the doubled bias twice, [sp, #8] M and add (the output
 * offset for left shifts), [sp, #16] r (l), then from [sp, #20] a copy of the eq_dw_run_t. */
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
#define EQ_DWA_S1(AT, A, B)                                       \
    "ldrd    r9, r10, " AT "\n\t"                                 \
    "smlad   r7, r9, " A ", r7\n\t"                               \
    "smlabt  r7, r10, " B ", r7\n\t"                              \
    "smlatb  r8, r9, " A ", r8\n\t"                               \
    "smlad   r8, r10, " B ", r8\n\t"
#define EQ_DWA_S2(AT, AT8, A, B)                                   \
    "ldrd    r9, r10, " AT "\n\t"                                 \
    "ldr     r11, " AT8 "\n\t"                                    \
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
/* The stages of r7 and r8 (PAIR_*) or of r7 alone (ONE_*), before the SSAT, with the depth in
 * r10 after: mode 2 (M and add at [sp, #8], r at [sp, #16]); left shifts l = 0..7 (L: M and
 * the output offset at [sp, #8], l at [sp, #16]): SMMLAR(2 acc * 2^l, M, offset) is the
 * offset plus the rounding doubling high multiply of acc * 2^l (|2 acc * 2^l| < 2^31). */
#define EQ_DWA_PAIR_R                                             \
    "ldrd    r9, r10, [sp, #8]\n\t"                               \
    EQ_DWA_STAGE("r7") EQ_DWA_STAGE("r8")                         \
    "ldrd    r9, r10, [sp, #16]\n\t"                              \
    "asr     r7, r7, r9\n\t"                                      \
    "asr     r8, r8, r9\n\t"
#define EQ_DWA_PAIR_L                                             \
    "ldr     r11, [sp, #16]\n\t"                                  \
    "lsl     r7, r7, r11\n\t"                                     \
    "lsl     r8, r8, r11\n\t"                                     \
    "ldrd    r9, r10, [sp, #8]\n\t"                               \
    "smmlar  r7, r7, r9, r10\n\t"                                 \
    "smmlar  r8, r8, r9, r10\n\t"                                 \
    "ldr     r10, [sp, #20]\n\t"
#define EQ_DWA_ONE_R                                              \
    "ldrd    r9, r10, [sp, #8]\n\t"                               \
    EQ_DWA_STAGE("r7")                                            \
    "ldrd    r9, r10, [sp, #16]\n\t"                              \
    "asr     r7, r7, r9\n\t"
#define EQ_DWA_ONE_L                                              \
    "ldr     r11, [sp, #16]\n\t"                                  \
    "lsl     r7, r7, r11\n\t"                                     \
    "ldrd    r9, r10, [sp, #8]\n\t"                               \
    "smmlar  r7, r7, r9, r10\n\t"                                 \
    "ldr     r10, [sp, #20]\n\t"
/* The doubled bias, the weights and where channel k (r12) works: r0 its plane, r12 its
 * output, lr the end of its first row's pairs, [sp, #36] its plane pointer after the band. */
#define EQ_DWA_CHANNEL                                                                      \
    "lsl     r7, r7, #1\n\t"                                                                \
    "strd    r7, r7, [sp]\n\t"                                                              \
    "ldr     r11, [sp, #52]\n\t"                                                            \
    "add     r0, r12, r12, lsl #1\n\t"                                                      \
    "add     r0, r11, r0, lsl #3\n\t"                                                       \
    "ldmia   r0, {r1-r6}\n\t"                                                               \
    "ldr     r10, [sp, #76]\n\t"                                                            \
    "ldrd    r0, r11, [sp, #44]\n\t"                                                        \
    "mla     r0, r10, r12, r0\n\t"                                                          \
    "add     r12, r11, r12\n\t"                                                             \
    "ldr     r11, [sp, #80]\n\t"                                                            \
    "add     r11, r0, r11\n\t"                                                              \
    "str     r11, [sp, #36]\n\t"                                                            \
    "ldr     lr, [sp, #24]\n\t"                                                             \
    "add     lr, r0, lr\n"
/* A channel's rows (r0, r12 at its start, lr the end of its first row's pairs; at least one
 * pair a row). */
#define EQ_DWA_ROWS(TAPS, ONE, PAIR, LAST)                                                  \
    "2:\n\t"                                                                                \
    "ldrd    r7, r8, [sp]\n\t"                                                              \
    TAPS                                                                                    \
    PAIR                                                                                    \
    "ssat    r7, #8, r7\n\t"                                                                \
    "ssat    r8, #8, r8\n\t"                                                                \
    "strb    r7, [r12]\n\t"                                                                 \
    "strb    r8, [r12, r10]\n\t"                                                            \
    "add     r12, r12, r10, lsl #1\n\t"                                                     \
    "cmp     r0, lr\n\t"                                                                    \
    "bne     2b\n\t"                                                                        \
    "ldr     r7, [sp, #40]\n\t"                                                             \
    "cbz     r7, 4f\n\t"                                                                    \
    "ldr     r7, [sp]\n\t"                                                                  \
    ONE                                                                                     \
    LAST                                                                                    \
    "ssat    r7, #8, r7\n\t"                                                                \
    "strb    r7, [r12]\n\t"                                                                 \
    "add     r12, r12, r10\n"                                                               \
    "4:\n\t" /* the next row */                                                             \
    "ldrd    r9, r10, [sp, #28]\n\t"                                                        \
    "add     r0, r0, r9\n\t"                                                                \
    "add     lr, lr, r10\n\t"                                                               \
    "ldr     r9, [sp, #36]\n\t"                                                             \
    "cmp     r0, r9\n\t"                                                                    \
    "bne     2b\n"
/* The left shifts' set-up and rows (9: from the test of r; in eq_dw_run_s1_n only, whose
 * small images are where such stages are found; the others leave those channels to C: less
 * code). */
#define EQ_DWA_LEFT(TAPS, ONE)                                                              \
    "9:\n\t" /* r outside 1 .. 22: a left shift l = -r of 0 .. 7? */                        \
    "rsb     r8, r10, #0\n\t"                                                               \
    "cmp     r8, #7\n\t"                                                                    \
    "bhi     8b\n\t"                                                                        \
    "adds    r11, r7, #0x400000\n\t" /* -2^22 < bias < 2^22 */                              \
    "beq     8b\n\t"                                                                        \
    "cmp     r11, #0x800000\n\t"                                                            \
    "bhs     8b\n\t"                                                                        \
    "ldr     r11, [sp, #72]\n\t"                                                            \
    "asr     r11, r11, #1\n\t"                                                              \
    "strd    r9, r11, [sp, #8]\n\t"                                                         \
    "str     r8, [sp, #16]\n\t"                                                             \
    EQ_DWA_CHANNEL                                                                          \
    EQ_DWA_ROWS(TAPS, ONE, EQ_DWA_PAIR_L, EQ_DWA_ONE_L)                                     \
    "b       6b\n\t"
#define EQ_DWA_FUNC(NAME, TAPS, ONE, NOLEFT, LEFT)                                             \
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
            "cmp     r8, #21\n\t" /* 1 <= r <= 22, else a left shift? */                    \
            "bhi     9f\n\t"                                                                \
            "adds    r11, r7, #0x20000000\n\t" /* -2^29 < bias < 2^29 */                    \
            "beq     8f\n\t"                                                                \
            "cmp     r11, #0x40000000\n\t"                                                  \
            "bhs     8f\n\t"                                                                \
            "ldr     r11, [sp, #72]\n\t"                                                    \
            "lsl     r11, r11, r8\n\t"                                                      \
            "strd    r9, r11, [sp, #8]\n\t"                                                 \
            "str     r10, [sp, #16]\n\t"                                                    \
            EQ_DWA_CHANNEL                                                                  \
            EQ_DWA_ROWS(TAPS, ONE, EQ_DWA_PAIR_R, EQ_DWA_ONE_R)                             \
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
            NOLEFT                                                                          \
            "8:\n\t" /* channel k left to C */                                              \
            "ldr     r11, [sp, #88]\n\t"                                                    \
            "movs    r10, #1\n\t"                                                           \
            "lsl     r10, r10, r12\n\t"                                                     \
            "orr     r11, r11, r10\n\t"                                                     \
            "str     r11, [sp, #88]\n\t"                                                    \
            "b       6b\n\t"                                                                \
            LEFT                                                                            \
            ".size " #NAME ", .-" #NAME "\n\t"                                              \
            ".text\n")
#define EQ_DWA_ONES(R1, R2)                                                                 \
    EQ_DWA_ONE("0", "r1", "r2") EQ_DWA_ONE(R1, "r3", "r4") EQ_DWA_ONE(R2, "r5", "r6")
/* a pair's taps; the first load steps r0 on to the next pair (the others' offsets less the
 * step) */
#define EQ_DWA_S1S(R1, R2)                                                                  \
    EQ_DWA_S1("[r0], #4", "r1", "r2") EQ_DWA_S1("[r0, #" R1 "-4]", "r3", "r4")              \
    EQ_DWA_S1("[r0, #" R2 "-4]", "r5", "r6")
#define EQ_DWA_S2S(R1, R2)                                                                  \
    EQ_DWA_S2("[r0], #8", "[r0]", "r1", "r2")                                               \
    EQ_DWA_S2("[r0, #" R1 "-8]", "[r0, #" R1 "]", "r3", "r4")                               \
    EQ_DWA_S2("[r0, #" R2 "-8]", "[r0, #" R2 "]", "r5", "r6")
#define EQ_DWA_NO "9:\n\t" /* no left shifts: to C */
EQ_DWA_FUNC(eq_dw_run_s1, EQ_DWA_S1S(EQ_DWA_R1, EQ_DWA_R2), EQ_DWA_ONES(EQ_DWA_R1, EQ_DWA_R2),
            EQ_DWA_NO, "");
EQ_DWA_FUNC(eq_dw_run_s2, EQ_DWA_S2S(EQ_DWA_R1, EQ_DWA_R2), EQ_DWA_ONES(EQ_DWA_R1, EQ_DWA_R2),
            EQ_DWA_NO, "");
EQ_DWA_FUNC(eq_dw_run_s1_m, EQ_DWA_S1S(EQ_DWA_M1, EQ_DWA_M2), EQ_DWA_ONES(EQ_DWA_M1, EQ_DWA_M2),
            EQ_DWA_NO, "");
EQ_DWA_FUNC(eq_dw_run_s2_m, EQ_DWA_S2S(EQ_DWA_M1, EQ_DWA_M2), EQ_DWA_ONES(EQ_DWA_M1, EQ_DWA_M2),
            EQ_DWA_NO, "");
EQ_DWA_FUNC(eq_dw_run_s1_n, EQ_DWA_S1S(EQ_DWA_N1, EQ_DWA_N2), EQ_DWA_ONES(EQ_DWA_N1, EQ_DWA_N2),
            "", EQ_DWA_LEFT(EQ_DWA_S1S(EQ_DWA_N1, EQ_DWA_N2), EQ_DWA_ONES(EQ_DWA_N1, EQ_DWA_N2)));
EQ_DWA_FUNC(eq_dw_run_s2_n, EQ_DWA_S2S(EQ_DWA_N1, EQ_DWA_N2), EQ_DWA_ONES(EQ_DWA_N1, EQ_DWA_N2),
            EQ_DWA_NO, "");
uint32_t eq_dw_run_s1(const eq_dw_run_t *a);
uint32_t eq_dw_run_s2(const eq_dw_run_t *a);
uint32_t eq_dw_run_s1_m(const eq_dw_run_t *a);
uint32_t eq_dw_run_s2_m(const eq_dw_run_t *a);
uint32_t eq_dw_run_s1_n(const eq_dw_run_t *a);
uint32_t eq_dw_run_s2_n(const eq_dw_run_t *a);
typedef char eq_dw_run_ok[(sizeof(void *) == 4 && sizeof(eq_dw_run_t) == 72) ? 1 : -1];
static const int32_t eq_dw_no_bias[4]; /* the assembly's biases when the op has none */
#endif

#endif /* EQ_DEPTHWISE_RUN_H */
