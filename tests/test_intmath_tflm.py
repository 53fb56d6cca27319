"""edgeq.intmath against TFLM's own integer code, bit for bit (issue #18's mutation survivors).

TFLM's sources in ../shared/tflm-cmsis-nn (tensorflow/lite/kernels/internal/quantization_util.cc
and common.cc, gemmlowp's fixedpoint.h; the double-rounding build, as the reference kernels
edgeq matches) are compiled into a small host program that answers queries on stdin; every
function below gets seeded random arguments and the edges of its domain. The softmax helpers
(exp on negative values, 1 / (1 + x), GetReciprocal, the input scaling and radius) are also
checked through the whole SOFTMAX by tests/test_interp.py, which needs TensorFlow; this file
needs only g++ and numpy, so that the mutation run (pyproject's [tool.mutmut]) can use it."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from edgeq import intmath

HARNESS = r"""
#include <cstdio>
#include <cstdint>
#include <cstring>
#include "tensorflow/lite/kernels/internal/common.h"
#include "tensorflow/lite/kernels/internal/quantization_util.h"

using gemmlowp::FixedPoint;

template <int IB> int32_t exp_neg(int32_t a) {
  return gemmlowp::exp_on_negative_values(FixedPoint<int32_t, IB>::FromRaw(a)).raw();
}

template <int E> int32_t shl(int32_t x) { return gemmlowp::SaturatingRoundingMultiplyByPOT<E>(x); }

int main() {
  char op[16];
  while (scanf("%15s", op) == 1) {
    if (!strcmp(op, "qm")) {
      double real; scanf("%lf", &real);
      int32_t m; int s; tflite::QuantizeMultiplier(real, &m, &s);
      printf("%d %d\n", m, s);
    } else if (!strcmp(op, "mbqm")) {
      long x, m; int s; scanf("%ld %ld %d", &x, &m, &s);
      printf("%d\n", tflite::MultiplyByQuantizedMultiplier((int32_t)x, (int32_t)m, s));
    } else if (!strcmp(op, "exp")) {
      long a; int ib; scanf("%ld %d", &a, &ib);
      int32_t r = -1;
      switch (ib) {
        case 1: r = exp_neg<1>((int32_t)a); break;
        case 3: r = exp_neg<3>((int32_t)a); break;
        case 5: r = exp_neg<5>((int32_t)a); break;
        case 6: r = exp_neg<6>((int32_t)a); break;
        case 7: r = exp_neg<7>((int32_t)a); break;
      }
      printf("%d\n", r);
    } else if (!strcmp(op, "oopx")) {
      long a; scanf("%ld", &a);
      printf("%d\n", gemmlowp::one_over_one_plus_x_for_x_in_0_1(
                         FixedPoint<int32_t, 0>::FromRaw((int32_t)a)).raw());
    } else if (!strcmp(op, "recip")) {
      long x; int digits; scanf("%ld %d", &x, &digits);
      int bits; int32_t r = tflite::GetReciprocal((int32_t)x, digits, &bits);
      printf("%d %d\n", r, bits);
    } else if (!strcmp(op, "softmax")) {
      float beta, scale; int ib; scanf("%f %f %d", &beta, &scale, &ib);
      int32_t m; int s;
      // as TFLM's SoftmaxPrepare: the float32 beta and scale of the file, widened to double
      tflite::PreprocessSoftmaxScaling((double)beta, (double)scale, ib, &m, &s);
      printf("%d %d %d\n", m, s, -tflite::CalculateInputRadius(ib, s));
    } else if (!strcmp(op, "shl")) {
      long x; int e; scanf("%ld %d", &x, &e);
      int32_t r = e == 1 ? shl<1>((int32_t)x) : e == 2 ? shl<2>((int32_t)x) : shl<5>((int32_t)x);
      printf("%d\n", r);
    } else if (!strcmp(op, "quant")) {
      // kernel_util.cc's Quantize() in CalculateActivationRangeQuantized
      float value, scale; int zp; scanf("%f %f %d", &value, &scale, &zp);
      printf("%d\n", zp + static_cast<int32_t>(tflite::TfLiteRound(value / scale)));
    } else {
      return 2;
    }
  }
  return 0;
}
"""


@pytest.fixture(scope="module")
def tflm(shared_dir):
    """ask(lines) -> the harness's answer lines, one per query. The program is built once per
    content of the harness and TFLM's sources (in the temporary folder, by hash), so that the
    mutation run does not recompile it for every mutant."""
    third = shared_dir / "tflm-cmsis-nn" / "third_party"
    internal = third / "tflite-micro" / "tensorflow" / "lite" / "kernels" / "internal"
    if not (internal / "quantization_util.cc").is_file():
        pytest.fail(f"TFLM's sources are required in {third} (../shared/tflm-cmsis-nn)")
    sources = [internal / "quantization_util.cc", internal / "common.cc"]
    key = hashlib.sha256(HARNESS.encode() + b"".join(p.read_bytes() for p in sources))
    exe = Path(tempfile.gettempdir()) / f"edgeq-tflm-intmath-{key.hexdigest()[:16]}"
    if not exe.is_file():
        work = Path(tempfile.mkdtemp(prefix="edgeq-tflm-intmath-"))
        (work / "harness.cc").write_text(HARNESS)
        built = subprocess.run(["g++", "-std=c++17", "-O1", f"-I{third / 'tflite-micro'}",
                                f"-I{third / 'gemmlowp'}", str(work / "harness.cc"),
                                *map(str, sources), "-o", str(work / "harness")],
                               capture_output=True, text=True, timeout=240)
        assert (work / "harness").is_file(), built.stderr[-3000:]
        os.replace(work / "harness", exe)  # atomic: concurrent runs see a whole program
        shutil.rmtree(work)

    def ask(queries: list[str]) -> list[list[int]]:
        done = subprocess.run([str(exe)], input="\n".join(queries) + "\n", capture_output=True,
                              text=True, check=True, timeout=120)
        answers = [[int(v) for v in line.split()] for line in done.stdout.splitlines()]
        assert len(answers) == len(queries)
        return answers

    return ask


_EDGES = [-(2**31), -(2**31) + 1, -(2**30) - 1, -(2**30), -65536, -3, -2, -1, 0, 1, 2, 3,
          65535, 2**30, 2**30 + 1, 2**31 - 2, 2**31 - 1]


def test_quantize_multiplier_equals_tflm(tflm):
    rng = np.random.default_rng(20)
    reals = np.concatenate([
        2.0 ** rng.uniform(-40, 12, 400), rng.uniform(0.0, 1.0, 100),
        [0.0, 1.0, 0.5, 0.25, 2.0, 1 - 2**-33, 0.5 - 2**-34, 2.0**-31, 2.0**-32, 2.0**-33,
         2.0**-31 - 2**-60, 3.0, 1e-300, 2.0**30 * 1.5]])
    want = tflm([f"qm {r!r}" for r in reals.tolist()])
    got = [list(intmath.quantize_multiplier(r)) for r in reals.tolist()]
    assert got == want
    mult, shift = intmath.quantize_multipliers(reals)
    assert np.column_stack([mult, shift]).tolist() == want


def test_multiply_by_quantized_multiplier_equals_tflm(tflm):
    rng = np.random.default_rng(21)
    n = 3000
    mult = rng.integers(1 << 30, 1 << 31, n)
    mult[:50] = 1 << 30
    mult[50:100] = 2**31 - 1
    shift = rng.integers(-31, 8, n)
    x = rng.integers(-(2**31), 2**31, n)
    x[:300] = rng.choice(_EDGES, 300)
    x[300:600] = rng.integers(-300, 300, 300)  # ties of both roundings are frequent here
    shift[300:600] = rng.integers(-5, 3, 300)
    # In C, x * (1 << left) must stay inside int32 (TFLM's contract: overflow is undefined).
    x = np.where(shift > 0, x >> np.maximum(shift, 0), x)
    want = tflm([f"mbqm {a} {m} {s}" for a, m, s in zip(x.tolist(), mult.tolist(),
                                                          shift.tolist(), strict=True)])
    got = intmath.multiply_by_quantized_multiplier(x, mult, shift)
    assert got.tolist() == [w[0] for w in want]
    # and requantize is that, plus the zero point, clamped
    zp, lo, hi = -7, -100, 90
    out = intmath.requantize(x, mult, shift, zp, lo, hi)
    assert out.dtype == np.int8
    assert out.tolist() == [min(max(w[0] + zp, lo), hi) for w in want]


@pytest.mark.parametrize("integer_bits", [1, 3, 5, 6, 7])
def test_exp_on_negative_values_equals_gemmlowp(tflm, integer_bits):
    rng = np.random.default_rng(22 + integer_bits)
    one = 1 << (31 - integer_bits)
    a = np.concatenate([-rng.integers(0, 2**31, 600), -rng.integers(0, 4 * one, 400),
                        [0, -1, -2, -one // 4, -one // 4 - 1, -one // 4 + 1, -one, -2 * one,
                         -(2**31) + 1, -(2**31)]])
    # -2^31 is not a value of exp's argument in SOFTMAX (diff_min cuts it) but is in its domain
    want = tflm([f"exp {v} {integer_bits}" for v in a.tolist()])
    got = intmath.exp_on_negative_values(a, integer_bits)
    assert got.tolist() == [w[0] for w in want]


def test_one_over_one_plus_x_equals_gemmlowp(tflm):
    rng = np.random.default_rng(23)
    a = np.concatenate([rng.integers(0, 2**31, 800), [0, 1, 2, 2**30, 2**31 - 2, 2**31 - 1]])
    want = tflm([f"oopx {v}" for v in a.tolist()])
    assert intmath.one_over_one_plus_x(a).tolist() == [w[0] for w in want]


def test_get_reciprocal_equals_tflm(tflm):
    rng = np.random.default_rng(24)
    # SOFTMAX's sum of exps: a positive int32 in Q12.19 (up to 4096 in real terms)
    x = np.concatenate([rng.integers(1, 2**31, 600), 2 ** rng.integers(0, 31, 60),
                        [1, 2, 3, 2**19, 2**19 + 1, 2**31 - 1]])
    for digits in (12, 0, 5):
        want = tflm([f"recip {v} {digits}" for v in x.tolist()])
        value, bits = intmath.reciprocal(x, digits)
        assert np.column_stack([value, bits]).tolist() == want, digits


def test_softmax_scaling_equals_tflm(tflm):
    rng = np.random.default_rng(25)
    betas = np.concatenate([rng.uniform(0.01, 20.0, 150), [1.0, 0.5, 2.0, 8.0, 1e6]])
    scales = np.concatenate([2.0 ** rng.uniform(-12, 2, 150), [1 / 256, 0.1, 0.05, 1.0, 10.0]])
    betas, scales = betas.astype(np.float32), scales.astype(np.float32)
    want = tflm([f"softmax {b!r} {s!r} 5" for b, s in zip(betas.tolist(), scales.tolist(),
                                                           strict=True)])
    got = [list(intmath.softmax_scaling(float(b), s)) for b, s in zip(betas, scales, strict=True)]
    assert got == want
    # beta 1e6 with scale 10: the real multiplier is clamped to 2^31 - 1 before
    # QuantizeMultiplier, as TFLM does (shift 31, the input radius 0)
    assert got[-1] == [2**31 - 1, 31, 0]


def test_saturating_shift_left_equals_gemmlowp(tflm):
    rng = np.random.default_rng(26)
    x = np.concatenate([rng.integers(-(2**31), 2**31, 300), _EDGES,
                        [2**26 - 1, 2**26, -(2**26), -(2**26) - 1, 2**29 - 1, 2**29, -(2**29),
                         -(2**29) - 1, 2**30 - 1, -(2**30) + 1]])
    for exponent in (1, 2, 5):
        want = tflm([f"shl {v} {exponent}" for v in x.tolist()])
        got = intmath._saturating_shift_left(x.astype(np.int64), exponent)
        assert got.tolist() == [w[0] for w in want], exponent


def test_activation_range_equals_tflm_quantize(tflm):
    """CalculateActivationRangeQuantized: the clamps of RELU, RELU6 and RELU_N1_TO_1 are TFLM's
    Quantize() of 0, 6, -1 and 1, limited to the int8 range."""
    rng = np.random.default_rng(27)
    cases = [(np.float32(s), int(z)) for s, z in zip(2.0 ** rng.uniform(-9, 0, 60),
                                                     rng.integers(-128, 128, 60), strict=True)]
    cases += [(np.float32(6 / 255), -128), (np.float32(0.05), 127), (np.float32(1 / 64), -3)]
    values = (0.0, 6.0, -1.0, 1.0)
    want = tflm([f"quant {v} {float(s)!r} {z}" for s, z in cases for v in values])
    q = iter(w[0] for w in want)
    for scale, zp in cases:
        q0, q6, qm1, q1 = next(q), next(q), next(q), next(q)
        assert [intmath.quantize_float32(v, scale, zp) for v in values] == [q0, q6, qm1, q1]
        assert intmath.activation_range("NONE", scale, zp) == (-128, 127)
        assert intmath.activation_range("RELU", scale, zp) == (max(-128, q0), 127)
        assert intmath.activation_range("RELU6", scale, zp) == (max(-128, q0), min(127, q6))
        assert intmath.activation_range("RELU_N1_TO_1", scale, zp) == (max(-128, qm1),
                                                                       min(127, q1))
    with pytest.raises(ValueError, match="unknown fused activation 'TANH'"):
        intmath.activation_range("TANH", np.float32(0.1), 0)
