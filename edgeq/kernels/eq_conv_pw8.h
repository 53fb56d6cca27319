/* edgeq kernels, private to eq_conv.c: CONV_2D 1x1 over 8, 16 or 32 input channels
 * (eq_conv1x1_in8).
 *
 * Pixel by pixel, output channel by output channel: the pixel's inputs in four or eight
 * registers, each output channel one record of 8, 12 or 21 words (one LDM, or four), then four
 * or eight SMLADs and the SMMLAR output stage per output (five instructions with the store when
 * every channel has the offset folded: doubled sums, see eq_pw8_records; seven otherwise), in
 * assembly with EQ_ASM, else the same arithmetic in C; 32 channels in two passes of 16 over
 * all output channels, the first pass's sums kept in the records. Only with EQ_FAST.
 */
#ifndef EQ_CONV_PW8_H
#define EQ_CONV_PW8_H

#include "eq_internal.h"

#if EQ_FAST
/* ---- CONV_2D 1x1 over eight input channels: pixel by pixel, channel by channel ---------------
 * A pixel's eight inputs stay in four registers (SXTAB16 adds the offset), and each output
 * channel is one eight-word record in the scratch (its weights as SXTB16 pairs, bias, m2, the
 * rounding term, and r with the offset added after the shift in the high half), loaded by one
 * LDM: four SMLADs and the SMMLAR output stage per output, stored with post-increment (the
 * channels of a pixel are adjacent, and so are the pixels). For convolutions whose channels
 * all have the right-shift stage and a whole int8 clamp; the others take eq_conv2d_fast. */
typedef struct {
    const int8_t *in;   /* the row's first input pixel */
    int8_t *out;        /* its first output */
    const uint32_t *rec; /* the records */
    const uint32_t *rec_end;
    int32_t step;       /* bytes between input pixels */
    int32_t pixels;     /* in the row */
    uint32_t off2;      /* the input offset, twice */
    int32_t mode;       /* bit 0: an odd number of channel turns (enter the unrolled loop
                         * halfway); bit 1: every offset folded (the EQ_PW_FOLDED loop) */
    int8_t *out_end;    /* the end of the row's outputs */
} eq_pw8_t;

/* set in the last record's r word (bit 8: the shift reads its low byte, EQ_PW_ANY's offset its
 * high half), which ends the channel loops without a comparison with rec_end */
#define EQ_PW_LAST 0x100u

#if EQ_ASM
/* where a pixel's channel loop is entered (r8 the mode): FULL, or HALF for an odd number of
 * turns (the loops are unrolled twice, so that their end test comes every other turn) */
#define EQ_PW_ENTRY(SLOT, FULL, HALF)                               \
    "adr.w   r9, " FULL "\n\t"                                      \
    "tst     r8, #1\n\t"                                             \
    "beq     8f\n\t"                                                 \
    "adr.w   r9, " HALF "\n"                                         \
    "8:\n\t"                                                         \
    "orr     r9, r9, #1\n\t" /* Thumb */                             \
    "str     r9, [sp, #" SLOT "]\n\t"
/* the same between the EQ_PW_ANY loop (FULL, HALF) and the EQ_PW_FOLDED one (F_FULL, F_HALF) */
#define EQ_PW_ENTRY2(SLOT, FULL, HALF, F_FULL, F_HALF)              \
    "tst     r8, #2\n\t"                                             \
    "bne     6f\n\t"                                                 \
    EQ_PW_ENTRY(SLOT, FULL, HALF)                                   \
    "b       7f\n"                                                    \
    "6:\n\t"                                                         \
    EQ_PW_ENTRY(SLOT, F_FULL, F_HALF)                               \
    "7:\n\t"
/* The output stage of ACC into T, stored with post-increment (the records' two kinds, see
 * eq_pw8_records). EQ_PW_FOLDED: the doubled sum, M, add and r; EQ_PW_ANY: the sum, 2M, add and
 * r | the offset after the shift << 16, as eq_rq_right. */
#define EQ_PW_FOLDED(T, ACC, M, ADD, R)                             \
    "add     " T ", " ADD ", " ACC ", asr #31\n\t"                 \
    "smmlar  " T ", " ACC ", " M ", " T "\n\t"                     \
    "asr     " T ", " T ", " R "\n\t"                               \
    "ssat    " T ", #8, " T "\n\t"                                  \
    "strb    " T ", [r1], #1\n\t"
#define EQ_PW_ANY(T, ACC, M2, ADD, R)                               \
    "add     " T ", " ACC ", " ADD "\n\t"                           \
    "add     " T ", " T ", " ACC ", asr #31\n\t"                   \
    "smmlar  " T ", " ACC ", " M2 ", " T "\n\t"                    \
    "asr     " T ", " T ", " R "\n\t"                               \
    "add     " T ", " T ", " R ", asr #16\n\t"                     \
    "ssat    " T ", #8, " T "\n\t"                                  \
    "strb    " T ", [r1], #1\n\t"
/* r0 records, r1 output, r2-r5 the pixel's (x0 x2) (x1 x3) (x4 x6) (x5 x7), r6-r9 weights, r10
 * bias then the accumulator, r11 m, r12 add, lr r (eq_pw8_records); frame: [sp] input
 * pointer, [sp, #4] records, [sp, #8] their end, [sp, #12] step, [sp, #16] the row's output
 * end, [sp, #20] off2, [sp, #24] where the channel loop is entered. Two channels a turn (the
 * channel count is even), two turns per end test. */
#define EQ_PW8_ONE(STAGE)                                             \
    "ldmia   r0!, {r6-r12, lr}\n\t"                                 \
    "smlad   r10, r2, r6, r10\n\t"                                  \
    "smlad   r10, r3, r7, r10\n\t"                                  \
    "smlad   r10, r4, r8, r10\n\t"                                  \
    "smlad   r10, r5, r9, r10\n\t"                                  \
    STAGE("r6", "r10", "r11", "r12", "lr")
/* four channels a turn (two per EQ_PW8_ONE pair), then the next pixel */
#define EQ_PW8_LOOP(FULL, HALF, STAGE)                              \
        ".balign 4\n"                                               \
        FULL ":\n\t"                                                \
        EQ_PW8_ONE(STAGE)                                           \
        EQ_PW8_ONE(STAGE)                                           \
        HALF ":\n\t"                                                \
        EQ_PW8_ONE(STAGE)                                           \
        EQ_PW8_ONE(STAGE)                                           \
        "tst     lr, #0x100\n\t" /* EQ_PW_LAST: the last record */   \
        "beq     " FULL "b\n\t"                                     \
        "ldr     r6, [sp, #16]\n\t"                                 \
        "cmp     r1, r6\n\t" /* the row's output end */            \
        "bne     1b\n\t"                                            \
        "b       9f\n\t"
__asm__(EQ_ASM_FUNC_BEGIN(eq_pw8_row)
        "push    {r4-r11, lr}\n\t"
        "sub     sp, sp, #28\n\t"
        "ldmia   r0, {r1-r8}\n\t" /* in out rec rec_end step pixels off2 mode */
        "str     r1, [sp]\n\t"
        "strd    r3, r4, [sp, #4]\n\t"
        "str     r5, [sp, #12]\n\t"
        "ldr     r6, [r0, #32]\n\t" /* out_end */
        "str     r6, [sp, #16]\n\t"
        "str     r7, [sp, #20]\n\t"
        EQ_PW_ENTRY2("24", "2f", "3f", "4f", "5f")
        "mov     r1, r2\n"
        "1:\n\t" /* a pixel */
        "ldr     r0, [sp]\n\t"
        "ldr     r6, [sp, #12]\n\t"
        "ldr     r7, [sp, #20]\n\t"
        "ldr     r3, [r0, #4]\n\t"
        "ldr     r2, [r0]\n\t"
        "add     r0, r0, r6\n\t"
        "str     r0, [sp]\n\t"
        "sxtab16 r4, r7, r3\n\t"
        "sxtab16 r5, r7, r3, ror #8\n\t"
        "sxtab16 r3, r7, r2, ror #8\n\t"
        "sxtab16 r2, r7, r2\n\t"
        "ldr     r0, [sp, #4]\n\t"
        "ldr     pc, [sp, #24]\n\t"
        EQ_PW8_LOOP("2", "3", EQ_PW_ANY)
        EQ_PW8_LOOP("4", "5", EQ_PW_FOLDED)
        "9:\n\t"
        "add     sp, sp, #28\n\t"
        "pop     {r4-r11, pc}\n\t"
        ".size eq_pw8_row, .-eq_pw8_row\n\t"
        ".text\n");
void eq_pw8_row(const eq_pw8_t *a);

/* r10 from a record's first word (the bias, or pass A's partial sum), plus its next
 * six weight words against r2-r7 */
#define EQ_PW_DOT6                                                  \
    "ldmia   r0!, {r10, r11, r12, lr}\n\t"                           \
    "smlad   r10, r2, r11, r10\n\t"                                  \
    "smlad   r10, r3, r12, r10\n\t"                                  \
    "smlad   r10, r4, lr, r10\n\t"                                   \
    "ldmia   r0!, {r11, r12, lr}\n\t"                                \
    "smlad   r10, r5, r11, r10\n\t"                                  \
    "smlad   r10, r6, r12, r10\n\t"                                  \
    "smlad   r10, r7, lr, r10\n\t"
/* 16 input channels: r2-r9 the pixel's eight pairs, the record [bias, w0 .. w7, m, add, r] in
 * four LDMs into r10 (bias, then the accumulator), r11, r12, lr; one channel a
 * turn, two per end test; frame as eq_pw8_row. */
#define EQ_PW16_ONE(STAGE, NEXT)                                    \
    EQ_PW_DOT6                                                      \
    "ldmia   r0!, {r11, r12, lr}\n\t"                                \
    "smlad   r10, r8, r11, r10\n\t"                                  \
    "smlad   r10, r9, r12, r10\n\t"                                  \
    "ldrd    r11, r12, [r0], #" NEXT "\n\t" /* add, r; on NEXT bytes */ \
    STAGE("r11", "r10", "lr", "r11", "r12")
/* two channels a turn, then the next pixel */
#define EQ_PW16_LOOP(FULL, HALF, STAGE)                             \
        ".balign 4\n"                                               \
        FULL ":\n\t"                                                \
        EQ_PW16_ONE(STAGE, "8")                                     \
        HALF ":\n\t"                                                \
        EQ_PW16_ONE(STAGE, "8")                                     \
        "tst     r12, #0x100\n\t" /* EQ_PW_LAST: the last record */  \
        "beq     " FULL "b\n\t"                                     \
        "ldr     r6, [sp, #16]\n\t"                                 \
        "cmp     r1, r6\n\t" /* the row's output end */            \
        "bne     1b\n\t"                                            \
        "b       9f\n\t"
__asm__(EQ_ASM_FUNC_BEGIN(eq_pw16_row)
        "push    {r4-r11, lr}\n\t"
        "sub     sp, sp, #28\n\t"
        "ldmia   r0, {r1-r8}\n\t" /* in out rec rec_end step pixels off2 mode */
        "str     r1, [sp]\n\t"
        "strd    r3, r4, [sp, #4]\n\t"
        "str     r5, [sp, #12]\n\t"
        "ldr     r6, [r0, #32]\n\t" /* out_end */
        "str     r6, [sp, #16]\n\t"
        "str     r7, [sp, #20]\n\t"
        EQ_PW_ENTRY2("24", "2f", "3f", "4f", "5f")
        "mov     r1, r2\n"
        "1:\n\t" /* a pixel: four input words, extended with the offset into r2-r9 */
        "ldr     r0, [sp]\n\t"
        "ldr     r10, [sp, #20]\n\t"
        "ldr     r6, [r0]\n\t"
        "ldr     r7, [r0, #4]\n\t"
        "ldr     r8, [r0, #8]\n\t"
        "ldr     r9, [r0, #12]\n\t"
        "ldr     r11, [sp, #12]\n\t"
        "add     r0, r0, r11\n\t"
        "str     r0, [sp]\n\t"
        "sxtab16 r2, r10, r6\n\t"
        "sxtab16 r3, r10, r6, ror #8\n\t"
        "sxtab16 r4, r10, r7\n\t"
        "sxtab16 r5, r10, r7, ror #8\n\t"
        "sxtab16 r6, r10, r8\n\t"
        "sxtab16 r7, r10, r8, ror #8\n\t"
        "sxtab16 r8, r10, r9\n\t"
        "sxtab16 r9, r10, r9, ror #8\n\t"
        "ldr     r0, [sp, #4]\n\t"
        "ldr     pc, [sp, #24]\n\t"
        EQ_PW16_LOOP("2", "3", EQ_PW_ANY)
        EQ_PW16_LOOP("4", "5", EQ_PW_FOLDED)
        "9:\n\t"
        "add     sp, sp, #28\n\t"
        "pop     {r4-r11, pc}\n\t"
        ".size eq_pw16_row, .-eq_pw16_row\n\t"
        ".text\n");
void eq_pw16_row(const eq_pw8_t *a);

/* 32 input channels: records [bias, w0 .. w7, partial sum, w8 .. w15, m, add, r] (21 words);
 * pass A: inputs 0-15 against w0 .. w7 of every channel, the sum into the record; pass B:
 * inputs 16-31 from that sum on, then the output stage. Frame as eq_pw8_row, [sp, #24] the
 * output pointer during pass A (r1 then holds rec_end), [sp, #28] and [sp, #32] where passes
 * A and B are entered. */
#define EQ_PW32_X(OFF)                                              \
    "ldr     r0, [sp]\n\t"                                           \
    "ldr     r10, [sp, #20]\n\t"                                     \
    "ldr     r6, [r0, #" OFF "]\n\t"                                 \
    "ldr     r7, [r0, #" OFF "+4]\n\t"                               \
    "ldr     r8, [r0, #" OFF "+8]\n\t"                               \
    "ldr     r9, [r0, #" OFF "+12]\n\t"                              \
    "sxtab16 r2, r10, r6\n\t"                                        \
    "sxtab16 r3, r10, r6, ror #8\n\t"                                \
    "sxtab16 r4, r10, r7\n\t"                                        \
    "sxtab16 r5, r10, r7, ror #8\n\t"                                \
    "sxtab16 r6, r10, r8\n\t"                                        \
    "sxtab16 r7, r10, r8, ror #8\n\t"                                \
    "sxtab16 r8, r10, r9\n\t"                                        \
    "sxtab16 r9, r10, r9, ror #8\n\t"
/* pass A's channel: the partial sum into the record, on to the next record */
#define EQ_PW32_A                                                   \
    EQ_PW_DOT6                                                      \
    "ldmia   r0!, {r11, r12}\n\t"                                    \
    "smlad   r10, r8, r11, r10\n\t"                                  \
    "smlad   r10, r9, r12, r10\n\t"                                  \
    "str     r10, [r0], #48\n\t"
/* pass B's channel: the 16-channel turn from the partial sum on, then past the record's tail */
#define EQ_PW32_B(STAGE) EQ_PW16_ONE(STAGE, "44") /* past the next record's first 9 words */
/* pass B, two channels a turn, then the next pixel */
#define EQ_PW32_LOOP(FULL, HALF, STAGE)                             \
        ".balign 4\n"                                               \
        FULL ":\n\t"                                                \
        EQ_PW32_B(STAGE)                                            \
        HALF ":\n\t"                                                \
        EQ_PW32_B(STAGE)                                            \
        "tst     r12, #0x100\n\t" /* EQ_PW_LAST: the last record */  \
        "beq     " FULL "b\n\t"                                     \
        "ldr     r6, [sp, #16]\n\t"                                 \
        "cmp     r1, r6\n\t" /* the row's output end */            \
        "bne     1b\n\t"                                            \
        "b       9f\n\t"
__asm__(EQ_ASM_FUNC_BEGIN(eq_pw32_row)
        "push    {r4-r11, lr}\n\t"
        "sub     sp, sp, #36\n\t"
        "ldmia   r0, {r1-r8}\n\t" /* in out rec rec_end step pixels off2 mode */
        "str     r1, [sp]\n\t"
        "strd    r3, r4, [sp, #4]\n\t"
        "str     r5, [sp, #12]\n\t"
        "ldr     r6, [r0, #32]\n\t" /* out_end */
        "str     r6, [sp, #16]\n\t"
        "str     r7, [sp, #20]\n\t"
        EQ_PW_ENTRY("28", "2f", "4f")
        EQ_PW_ENTRY2("32", "3f", "5f", "10f", "11f")
        "mov     r1, r2\n"
        "1:\n\t" /* a pixel: pass A over inputs 0-15, the output pointer parked for the
                    * records' end in r1 */
        EQ_PW32_X("0")
        "ldr     r0, [sp, #4]\n\t"
        "str     r1, [sp, #24]\n\t"
        "ldr     r1, [sp, #8]\n\t"
        "ldr     pc, [sp, #28]\n"
        ".balign 4\n"
        "2:\n\t"
        EQ_PW32_A
        "4:\n\t"
        EQ_PW32_A
        "cmp     r0, r1\n\t"
        "bne     2b\n\t"
        "ldr     r1, [sp, #24]\n\t"
        /* pass B over inputs 16-31, the input pointer on to the next pixel */
        EQ_PW32_X("16")
        "ldr     r11, [sp, #12]\n\t"
        "add     r0, r0, r11\n\t"
        "str     r0, [sp]\n\t"
        "ldr     r0, [sp, #4]\n\t"
        "add     r0, r0, #36\n\t"
        "ldr     pc, [sp, #32]\n\t"
        EQ_PW32_LOOP("3", "5", EQ_PW_ANY)
        EQ_PW32_LOOP("10", "11", EQ_PW_FOLDED)
        "9:\n\t"
        "add     sp, sp, #36\n\t"
        "pop     {r4-r11, pc}\n\t"
        ".size eq_pw32_row, .-eq_pw32_row\n\t"
        ".text\n");
void eq_pw32_row(const eq_pw8_t *a);
typedef char eq_pw8_layout_ok[(sizeof(void *) == 4 && sizeof(eq_pw8_t) == 36) ? 1 : -1];
#else
/* The same in C: the records' arithmetic exactly as the assembly does it. */
static int8_t eq_pw_stage(int32_t acc, const uint32_t *t, int folded)
{
    const int32_t v = folded ? eq_smmlar(acc, (int32_t)t[0], (int32_t)t[1] + (acc >> 31))
                             : eq_smmlar(acc, (int32_t)t[0], acc + (int32_t)t[1] + (acc >> 31));
    return (int8_t)eq_sat8((v >> (t[2] & 0xFF)) + ((int32_t)t[2] >> 16));
}

static void eq_pw16_rows(const eq_pw8_t *a, int folded)
{
    const int8_t *in = a->in;
    int8_t *o = a->out;
    int32_t n, k;
    for (n = 0; n < a->pixels; ++n, in += a->step) {
        uint32_t x[8];
        const uint32_t *r;
        for (k = 0; k < 4; ++k) {
            const uint32_t v = eq_load32(in + 4 * k);
            x[2 * k] = EQ_SXTAB16(a->off2, v);
            x[2 * k + 1] = EQ_SXTAB16_ROR8(a->off2, v);
        }
        for (r = a->rec; r < a->rec_end; r += 12) {
            int32_t acc = (int32_t)r[0];
            for (k = 0; k < 8; ++k) {
                acc = EQ_SMLAD(x[k], r[1 + k], acc);
            }
            *o++ = eq_pw_stage(acc, r + 9, folded);
        }
    }
}

static void eq_pw32_rows(const eq_pw8_t *a, int folded)
{
    const int8_t *in = a->in;
    int8_t *o = a->out;
    int32_t n, k;
    for (n = 0; n < a->pixels; ++n, in += a->step) {
        uint32_t x[16];
        const uint32_t *r;
        for (k = 0; k < 8; ++k) {
            const uint32_t v = eq_load32(in + 4 * k);
            x[2 * k] = EQ_SXTAB16(a->off2, v);
            x[2 * k + 1] = EQ_SXTAB16_ROR8(a->off2, v);
        }
        for (r = a->rec; r < a->rec_end; r += 21) {
            int32_t acc = (int32_t)r[0];
            for (k = 0; k < 8; ++k) {
                acc = EQ_SMLAD(x[k], r[1 + k], acc);
            }
            for (k = 0; k < 8; ++k) {
                acc = EQ_SMLAD(x[8 + k], r[10 + k], acc);
            }
            *o++ = eq_pw_stage(acc, r + 18, folded);
        }
    }
}

static void eq_pw8_rows(const eq_pw8_t *a, int folded)
{
    const int8_t *in = a->in;
    int8_t *o = a->out;
    int32_t n;
    for (n = 0; n < a->pixels; ++n, in += a->step) {
        const uint32_t v0 = eq_load32(in), v1 = eq_load32(in + 4);
        const uint32_t x0 = EQ_SXTAB16(a->off2, v0), x1 = EQ_SXTAB16_ROR8(a->off2, v0);
        const uint32_t x2 = EQ_SXTAB16(a->off2, v1), x3 = EQ_SXTAB16_ROR8(a->off2, v1);
        const uint32_t *r;
        for (r = a->rec; r < a->rec_end; r += 8) {
            int32_t acc = EQ_SMLAD(x0, r[0], (int32_t)r[4]);
            acc = EQ_SMLAD(x1, r[1], acc);
            acc = EQ_SMLAD(x2, r[2], acc);
            acc = EQ_SMLAD(x3, r[3], acc);
            *o++ = eq_pw_stage(acc, r + 5, folded);
        }
    }
}
static void eq_pw8_row(const eq_pw8_t *a) { eq_pw8_rows(a, a->mode & 2); }
static void eq_pw16_row(const eq_pw8_t *a) { eq_pw16_rows(a, a->mode & 2); }
static void eq_pw32_row(const eq_pw8_t *a) { eq_pw32_rows(a, a->mode & 2); }
#endif

/* The records of every channel (k = in_c, 8, 16 or 32 values: 8 words [w0 .. w3, bias, m,
 * add, r], 12 [bias, w0 .. w7, m, add, r] or 21 [bias, w0 .. w7, partial sum, w8 .. w15, m,
 * add, r], w as SXTB16 pairs), for one of two output stages:
 * - folded (every channel EQ_RQ_FOLDED, |bias| < 2^30 - 2^21): weights and bias doubled, so
 *   that the rows sum 2 acc (|sum| <= 32 * 255 * 128 < 2^20: it fits int32), and m = M; then
 *   SMMLAR(2 acc, M, add + sign) is floor((acc M + 2^30 + (add + sign) 2^31) / 2^31), that is
 *   SRDHM(acc, M) + add + sign: one addition before SMMLAR (EQ_PW_FOLDED) instead of two;
 * - any (EQ_RQ_RIGHT channels too): the sums as they are, m = 2M, and r's high half the
 *   offset added after the shift (EQ_PW_ANY, eq_rq_right).
 * add and r (its low byte) are eq_rqc_make's. Returns 2 (folded), 1 (any), or 0 when a channel
 * has no right-shift stage (then the caller takes the general fast path). */
static int eq_pw8_records(const eq_conv_t *p, uint32_t *records)
{
    const int32_t k = p->in_c, words = k == 8 ? 8 : k == 16 ? 12 : 21;
    int32_t folded = 1, oc, i;
    for (oc = 0; oc < p->out_c; ++oc) {
        uint32_t *rec = records + oc * words;
        const eq_rqc_t rq = eq_rqc_make(p->multiplier[oc], p->shift[oc],
                                        p->bias ? p->bias[oc] : 0, p->out_offset);
        const int32_t kind = EQ_RQ_KIND(rq), d = folded ? 2 : 1;
        const eq_rqu_t u = eq_rqu_make(rq, p->out_offset);
        uint32_t *w = rec + (k == 8 ? 0 : 1), *tail = rec + (k == 8 ? 5 : k == 16 ? 9 : 18);
        int32_t v[32];
        if (kind != EQ_RQ_FOLDED && kind != EQ_RQ_RIGHT) {
            return 0;
        }
        if (folded && (kind != EQ_RQ_FOLDED || rq.bias <= -(1 << 30) + (1 << 21)
                       || rq.bias >= (1 << 30) - (1 << 21))) {
            folded = 0; /* start again with the other stage */
            oc = -1;
            continue;
        }
        for (i = 0; i < k; ++i) {
            v[i] = d * eq_weight(p->weights, oc * p->filter_stride + i, p->weight_bits);
        }
        for (i = 0; i < k / 4; ++i) {
            uint32_t *dst = w + 2 * i + (i >= 4); /* 32: the partial sum after w7 */
            dst[0] = eq_pair16(v[4 * i], v[4 * i + 2]);
            dst[1] = eq_pair16(v[4 * i + 1], v[4 * i + 3]);
        }
        if (k == 32) {
            rec[9] = 0; /* written by the first pass */
        }
        rec[k == 8 ? 4 : 0] = (uint32_t)rq.bias * (uint32_t)d;
        tail[0] = folded ? (uint32_t)p->multiplier[oc] : (uint32_t)u.m2;
        tail[1] = (uint32_t)u.add;
        tail[2] = (uint32_t)u.right | (uint32_t)u.after << 16;
    }
    if (p->out_c > 0) {
        records[p->out_c * words - 1] |= EQ_PW_LAST;
    }
    return folded ? 2 : 1;
}

/* 1x1 over 8, 16 or 32 input channels, no padding (an even number of output channels for 8),
 * whole int8 clamp: eq_pw8_row / eq_pw16_row / eq_pw32_row (their EQ_PW_FOLDED loops when every
 * channel has the offset folded) output row by output row. 0 if a channel's stage does not
 * allow it. */
static int eq_conv1x1_in8(const eq_conv_t *p, const int8_t *in, int8_t *out, uint32_t *rec)
{
    const int32_t k = p->in_c, kind = eq_pw8_records(p, rec);
    void (*row)(const eq_pw8_t *) = k == 8 ? eq_pw8_row : k == 16 ? eq_pw16_row : eq_pw32_row;
    eq_pw8_t a;
    int32_t b, oy;
    if (kind == 0) {
        return 0;
    }
    a.rec = rec;
    a.rec_end = rec + (k == 8 ? 8 : k == 16 ? 12 : 21) * p->out_c;
    a.step = p->stride_w * k;
    a.pixels = p->out_w;
    a.off2 = eq_pair16(p->in_offset, p->in_offset);
    a.mode = (k == 8 ? p->out_c / 2 : p->out_c) % 2 | (kind == 2 ? 2 : 0);
    for (b = 0; b < p->batches; ++b) {
        for (oy = 0; oy < p->out_h; ++oy) {
            a.in = in + ((b * p->in_h + oy * p->stride_h) * p->in_w) * k;
            a.out = out + ((b * p->out_h + oy) * p->out_w) * p->out_c;
            a.out_end = a.out + p->out_w * p->out_c;
            row(&a);
        }
    }
    return 1;
}

/* 32 input channels only from this many output pixels: the 21-word records (32 weights
 * unpacked per channel, once per call) cost more than they save on fewer (measured: vww_96's
 * 12x12 32->64 layer and a 32-pixel audio row were slower). cgen.scratch_bytes mirrors it. */
#define EQ_PW32_MIN_PIXELS 256

static int eq_conv1x1_in8_applies(const eq_conv_t *p)
{
    return p->filter_h == 1 && p->filter_w == 1 && p->filter_in_c == p->in_c
           && ((p->in_c == 8 && p->out_c % 2 == 0) || p->in_c == 16
               || (p->in_c == 32 && p->out_h * p->out_w >= EQ_PW32_MIN_PIXELS))
           && p->filter_stride == p->in_c && p->pad_h == 0 && p->pad_w == 0
           && p->act_min == -128 && p->act_max == 127
           && p->weight_bits != 16 && p->out_w > 0;
}
#endif /* EQ_FAST */

#endif /* EQ_CONV_PW8_H */
