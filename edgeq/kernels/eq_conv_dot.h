/* edgeq kernels, private to eq_conv.c: the dot products of the CONV_2D fast path.
 *
 * One filter row against EQ_COLS (six) int16 columns at once: SMLAD on pairs of 16-bit values,
 * int8 weights sign-extended by SXTB16, int4 weights (eight a word) expanded to pairs of
 * values times 16 (divided out after the sum), weight_bits 16 loaded as ready pairs. Blocks of
 * at most three pixels use three-column forms. With EQ_ASM the inner loops are inline assembly
 * (13 registers), else the same in C with the DSP intrinsics. Only with EQ_FAST.
 */
#ifndef EQ_CONV_DOT_H
#define EQ_CONV_DOT_H

#include "eq_internal.h"

#if EQ_FAST
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
/* frame: [sp] stride, [sp, #4] dst, [sp, #8] q (one LDM), [sp, #12] the channel's weight end,
 * [sp, #16] cols, [sp, #20] a channel's weight bytes, [sp, #24] where the four-run loop is entered (runs - 1
 * mod 4 runs before its first test), [sp, #28] s, [sp, #32] end */
#define EQ_C6_FUNC(NAME, W, WSHIFT)                                                             \
    __asm__(".syntax unified\n\t"                                                               \
        ".section .text." #NAME ",\"ax\",%progbits\n\t"                                         \
        ".balign 4\n\t"                                                                         \
        ".global " #NAME "\n\t"                                                                 \
        ".hidden " #NAME "\n\t"                                                                 \
        ".thumb\n\t"                                                                            \
        ".thumb_func\n\t"                                                                       \
        ".type " #NAME ", %function\n"                                                          \
        #NAME ":\n\t"                                                                           \
        "push    {r4-r11, lr}\n\t"                                                              \
        "sub     sp, sp, #36\n\t"                                                               \
        "str     r0, [sp, #28]\n\t"                                                             \
        "ldmia   r0, {r1-r7}\n\t" /* q end dst w cols runs stride */                            \
        "str     r7, [sp]\n\t"                                                                  \
        "str     r3, [sp, #4]\n\t"                                                              \
        "str     r1, [sp, #8]\n\t"                                                              \
        "str     r5, [sp, #16]\n\t"                                                             \
        "str     r2, [sp, #32]\n\t"                                                             \
        "lsl     r8, r6, #" #WSHIFT "\n\t"                                                      \
        "str     r8, [sp, #20]\n\t"                                                             \
        "sub     r6, r6, #1\n\t"                                                                \
        "and     r6, r6, #3\n\t"                                                                \
        "adr     r8, 60f\n\t"                                                                   \
        "cmp     r6, #1\n\t"                                                                    \
        "bne     5f\n\t"                                                                        \
        "adr     r8, 61f\n"                                                                     \
        "5:\n\t"                                                                                \
        "cmp     r6, #2\n\t"                                                                    \
        "bne     6f\n\t"                                                                        \
        "adr     r8, 62f\n"                                                                     \
        "6:\n\t"                                                                                \
        "cmp     r6, #3\n\t"                                                                    \
        "bne     7f\n\t"                                                                        \
        "adr     r8, 63f\n"                                                                     \
        "7:\n\t"                                                                                \
        "orr     r8, r8, #1\n\t" /* Thumb */                                                    \
        "str     r8, [sp, #24]\n\t"                                                             \
        "mov     lr, r4\n"                                                                      \
        "10:\n\t" /* a channel: r1 q, lr its weights */                                         \
        "ldr     r2, [sp, #32]\n\t"                                                             \
        "cmp     r1, r2\n\t"                                                                    \
        "beq     90f\n\t"                                                                       \
        "ldrb    r3, [r1, #12]\n\t"                                                             \
        "cmp     r3, #4\n\t" /* EQ_RQ_FOLDED */                                                 \
        "beq     11f\n\t"                                                                       \
        "cmp     r3, #2\n\t" /* EQ_RQ_RIGHT */                                                  \
        "bne     90f\n"                                                                         \
        "11:\n\t"                                                                               \
        "ldr     r0, [r1]\n\t"                                                                  \
        "ldr     r12, [sp, #16]\n\t"                                                            \
        "ldr     r3, [sp, #20]\n\t"                                                             \
        "add     r3, lr, r3\n\t"                                                                \
        "str     r3, [sp, #12]\n\t"                                                             \
        EQ_C6_FIRST(W)                                                                          \
        "ldr     pc, [sp, #24]\n"                                                               \
        ".balign 4\n"                                                                           \
        "1:\n\t"                                                                                \
        EQ_C6_RUN(W)                                                                            \
        "63:\n\t"                                                                               \
        EQ_C6_RUN(W)                                                                            \
        "62:\n\t"                                                                               \
        EQ_C6_RUN(W)                                                                            \
        "61:\n\t"                                                                               \
        EQ_C6_RUN(W)                                                                            \
        "60:\n\t"                                                                               \
        "ldr     r8, [sp, #12]\n\t"                                                             \
        "cmp     lr, r8\n\t"                                                                    \
        "bne     1b\n\t"                                                                        \
        "ldmia   sp, {r10-r12}\n\t" /* stride dst q */                                          \
        "add     r9, r11, #1\n\t" /* the next channel's dst and q */                            \
        "str     r9, [sp, #4]\n\t"                                                              \
        "add     r9, r12, #16\n\t"                                                              \
        "str     r9, [sp, #8]\n\t"                                                              \
        "ldrd    r6, r7, [r12, #4]\n\t"                                                         \
        "ldrb    r8, [r12, #13]\n\t"                                                            \
        "ldrb    r9, [r12, #12]\n\t"                                                            \
        "cmp     r9, #4\n\t"                                                                    \
        "bne     30f\n\t"                                                                       \
        EQ_C6_STAGE("")                                                                         \
        "ldr     r1, [sp, #8]\n\t"                                                              \
        "ldr     lr, [sp, #12]\n\t"                                                             \
        "b       10b\n"                                                                         \
        "30:\n\t"                                                                               \
        "ldrsh   lr, [r12, #14]\n\t"                                                            \
        EQ_C6_STAGE("add     r9, r9, lr\n\t")                                                   \
        "ldr     r1, [sp, #8]\n\t"                                                              \
        "ldr     lr, [sp, #12]\n\t"                                                             \
        "b       10b\n"                                                                         \
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
EQ_C6_FUNC(eq_conv6_hot, EQ_C6_W8, 2);
EQ_C6_FUNC(eq_conv6_hot_wide, EQ_C6_W16, 3);
void eq_conv6_hot(eq_conv6_t *s);
void eq_conv6_hot_wide(eq_conv6_t *s); /* weights stored as int16 pairs */

/* eq_conv3_hot: the same for a block of n <= 3 pixels (columns 0-2 of each run; the missing
 * ones repeat the last pixel, so computing three and storing n is exact): per run one weight
 * word, two SXTB16, an LDM and an LDRD of the columns, six SMLADs (12 instructions per 12
 * MACs). Registers: r0-r2 the accumulators, r3 the channel's weight end, r4 stride, r5 n,
 * r6/r7 the weight pairs, r8-r11 columns, r12 the columns, lr the weights. */
#define EQ_C3_RUN                                   \
    "ldr     r7, [lr], #4\n\t"                      \
    "ldmia   r12, {r8-r11}\n\t"                     \
    "sxtb16  r6, r7\n\t"                            \
    "sxtb16  r7, r7, ror #8\n\t"                    \
    "smlad   r0, r8, r6, r0\n\t"                    \
    "smlad   r0, r9, r7, r0\n\t"                    \
    "ldrd    r8, r9, [r12, #16]\n\t"                \
    "add     r12, r12, #48\n\t"                     \
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
__asm__(".syntax unified\n\t"
        ".section .text.eq_conv3_hot,\"ax\",%progbits\n\t"
        ".balign 4\n\t"
        ".global eq_conv3_hot\n\t"
        ".hidden eq_conv3_hot\n\t"
        ".thumb\n\t"
        ".thumb_func\n\t"
        ".type eq_conv3_hot, %function\n"
        "eq_conv3_hot:\n\t"
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

#endif /* EQ_CONV_DOT_H */
