"""The engine's in-place API (issue 13): graph inputs and outputs live inside the arena, with the
lifetimes they really have (an input from the start to its last reader, an output from its
producer to the end); `edgeq_input_at(k)` / `edgeq_invoke_in_place()` / `edgeq_output_at(k)`
give TFLM's outputs bit for bit on the host (AddressSanitizer, UBSan) and under QEMU, and so
does the copying `edgeq_invoke(in, out)` built on top. Board firmware (stm32h743, generic)
carries test inputs and TFLM's outputs in flash and says pass or fail for each; the comparison
is compiled for the host and made to fail with one wrong expected byte."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import opmodels
import pytest
from test_cgen import _assert_varied

from edgeq.deploy import cgen
from edgeq.deploy.firmware import build_firmware
from edgeq.deploy.plan import ARENA, plan_memory
from edgeq.deploy.qemu import run_qemu
from edgeq.errors import DataError
from edgeq.tflite.model import Model
from edgeq.tflite.read import read_model
from edgeq.tflite.write import write_model

WERROR = ("-Werror",)


# ---- models -----------------------------------------------------------------------------------


def _conv1x1(b: opmodels._Builder, x: int, name: str, channels: int) -> int:
    """A 1x1 CONV_2D of tensor x into a new tensor of the same shape."""
    shape = b.tensors[x].shape
    wt = b.weights(f"{name}/weights", (channels, 1, 1, shape[3]), 8, 0)
    scale = b.output_scale(x, wt, shape[3])
    bias = b.bias(f"{name}/bias", x, wt, channels, magnitude=scale * 10)
    y = b.out_activation(name, (*shape[:3], channels), scale)
    b.op("CONV_2D", [x, wt, bias], y, padding="SAME", stride_w=1, stride_h=1,
         fused_activation_function="NONE")
    return y


def _add(b: opmodels._Builder, x1: int, x2: int, name: str) -> int:
    (lo1, hi1), (lo2, hi2) = b.span(x1), b.span(x2)
    y = b.activation(name, b.tensors[x1].shape, lo=(lo1 + lo2) / 2, hi=(hi1 + hi2) / 2)
    b.op("ADD", [x1, x2], y, fused_activation_function="NONE")
    return y


def residual(rng) -> Model:
    """Two residual blocks: y1 = x + conv(x) reads the graph input last, so the ADD may write
    over it; y = y1 + conv(y1) is the graph output, written over y1."""
    b = opmodels._Builder(rng)
    x = b.activation("input", (1, 5, 6, 8))
    y1 = _add(b, x, _conv1x1(b, x, "conv1", 8), "block1")
    y = _add(b, y1, _conv1x1(b, y1, "conv2", 8), "block2")
    return b.model([x], [y], "residual")


def reshaped_output(rng) -> Model:
    """The graph output is a RESHAPE (an alias) of the pooled tensor."""
    b = opmodels._Builder(rng)
    x = b.activation("input", (1, 6, 6, 3))
    p = b.like("pool", (1, 3, 3, 3), x)
    b.op("MAX_POOL_2D", [x], p, padding="VALID", stride_w=2, stride_h=2, filter_width=2,
         filter_height=2, fused_activation_function="NONE")
    y = b.like("flat", (1, 27), p)
    b.op("RESHAPE", [p, b.const_int32("flat/shape", [1, 27])], y, new_shape=[1, 27])
    return b.model([x], [y], "reshaped output")


def input_alias_and_pool(rng) -> Model:
    """Two outputs: an average pool of the input, and the input itself under another shape (a
    RESHAPE of the graph input, so it shares the input's bytes)."""
    b = opmodels._Builder(rng)
    x = b.activation("input", (1, 4, 4, 2))
    p = b.like("avg", (1, 2, 2, 2), x)
    b.op("AVERAGE_POOL_2D", [x], p, padding="VALID", stride_w=2, stride_h=2, filter_width=2,
         filter_height=2, fused_activation_function="NONE")
    flat = b.like("flat", (1, 32), x)
    b.op("RESHAPE", [x, b.const_int32("flat/shape", [1, 32])], flat, new_shape=[1, 32])
    return b.model([x], [p, flat], "input alias and pool")


MODELS = {
    "residual": residual,
    "reshaped_output": reshaped_output,
    "input_alias_and_pool": input_alias_and_pool,
    "two_inputs": lambda rng: opmodels.add(rng, activation="RELU"),
    "conv_pool_fc": opmodels.conv_pool_fc,
}


def _tflm(model_bytes: bytes, packed: np.ndarray, model: Model) -> np.ndarray:
    """TFLM (tflite_micro's own interpreter) on packed rows: inputs back to back in, outputs
    back to back out."""
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model_bytes, arena_size=256 * 1024)
    sizes = [t.nbytes for t in model.input_tensors]
    rows = []
    for row in packed:
        for k, part in enumerate(np.split(row, np.cumsum(sizes)[:-1])):
            interpreter.set_input(part.reshape(model.input_tensors[k].shape), k)
        interpreter.invoke()
        rows.append(np.concatenate([interpreter.get_output(k).reshape(-1)
                                    for k in range(len(model.outputs))]))
    return np.stack(rows).astype(np.int8)


def _inputs(model: Model, rng, n: int) -> np.ndarray:
    return np.stack([np.concatenate([opmodels.random_input(model, rng, k).reshape(-1)
                                     for k in range(len(model.inputs))]) for _ in range(n)])


def _vww_photos(coco_vww_dir, n: int) -> np.ndarray:
    from PIL import Image

    images = sorted(coco_vww_dir.rglob("*.jpg"))[:n]
    assert len(images) == n
    return np.stack([(np.asarray(Image.open(p).convert("RGB").resize((96, 96)), np.int16)
                      - 128).astype(np.int8).reshape(-1) for p in images])


# ---- the plan ---------------------------------------------------------------------------------


def _holder(plan, t: int, alive_at: int):
    """The buffer that holds tensor t's bytes at time `alive_at` (op index; 0 is the start,
    len(ops) the end)."""
    where, offset = plan.location[t]
    assert where == ARENA, (t, where)
    (buf,) = [b for b in plan.buffers if b.root >= 0 and b.offset == offset
              and b.first <= alive_at <= b.last]
    return buf


def _check_io_lifetimes(model: Model, plan) -> None:
    """Every graph input is held from the start through its last reader and every graph output
    from its producer through the end, by one buffer that (plan.check) shares no byte with
    any buffer alive at the same time."""
    plan.check()
    root = {}
    for op in model.ops:
        if op.kind == "RESHAPE":
            root[op.outputs[0]] = root.get(op.inputs[0], op.inputs[0])

    def ops_touching(t, side):
        return [i for i, op in enumerate(model.ops)
                if any(u >= 0 and root.get(u, u) == root.get(t, t) for u in getattr(op, side))]

    end = len(model.ops)
    for t in model.inputs:
        buf = _holder(plan, t, 0)
        assert buf.first == 0 and buf.last >= max(ops_touching(t, "inputs")), (t, buf)
    for t in model.outputs:
        buf = _holder(plan, t, end)
        assert buf.last == end and buf.first <= min(ops_touching(t, "outputs") or [0]), (t, buf)


@pytest.mark.parametrize("name", MODELS)
def test_graph_io_lives_in_the_arena_for_as_long_as_it_is_needed(name):
    model = MODELS[name](np.random.default_rng(3))
    plan = plan_memory(model, cgen.scratch_bytes(model))
    _check_io_lifetimes(model, plan)
    assert plan.lower_bound <= plan.arena_size
    # every byte the caller writes or reads is inside the arena
    for t in model.inputs + model.outputs:
        assert plan.location[t][1] + model.tensors[t].nbytes <= plan.arena_size


def test_input_and_output_buffers_have_their_true_lifetimes():
    model = residual(np.random.default_rng(0))
    plan = plan_memory(model)
    plan.check()
    by_root = {b.root: b for b in plan.buffers}
    x, y = model.inputs[0], model.outputs[0]
    # the first ADD (op 1) reads x last and writes block1 over it; block1 lives to op 3, where
    # the second ADD reads it last and writes the output over it, which lives to the end (4)
    assert plan.location[x] == plan.location[y]
    assert (by_root[x].first, by_root[x].last) == (0, 4)
    assert len(model.ops) == 4 and [op.kind for op in model.ops] == ["CONV_2D", "ADD"] * 2
    # an output that is an alias of the input lives through the whole inference
    alias = input_alias_and_pool(np.random.default_rng(0))
    plan = plan_memory(alias)
    plan.check()
    flat = alias.outputs[1]
    assert plan.location[flat] == plan.location[alias.inputs[0]]
    buf = {b.root: b for b in plan.buffers}[alias.inputs[0]]
    assert (buf.first, buf.last) == (0, len(alias.ops))
    pool = {b.root: b for b in plan.buffers}[alias.outputs[0]]
    assert pool.offset >= buf.offset + buf.size or buf.offset >= pool.offset + pool.size


def test_vww_input_inside_the_arena_keeps_the_layer_by_layer_bound(vww_int8_path):
    model = read_model(vww_int8_path)
    plan = plan_memory(model, cgen.scratch_bytes(model))
    _check_io_lifetimes(model, plan)
    # the 27,648-byte input lives in the arena now, yet the arena is still the bound set by
    # the first pointwise convolution (48x48x8 in, 48x48x16 out, and its scratch, whose size
    # follows the kernels' fast paths)
    assert plan.location[model.inputs[0]][0] == ARENA
    pointwise = 2  # op 2: CONV_2D 1x1, 8 -> 16 channels at 48x48
    operands = 48 * 48 * 8 + 48 * 48 * 16
    scratch = -(-cgen.scratch_bytes(model)[pointwise] // 16) * 16  # planned 16-byte aligned
    assert plan.arena_size == plan.lower_bound == operands + scratch


# ---- the engine on the host -------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_in_place_and_copying_engines_match_tflm_on_the_host(name, tmp_path):
    for seed in (21, 22):
        rng = np.random.default_rng(seed)
        model = MODELS[name](rng)
        files = cgen.generate_engine(model, tmp_path / f"e{seed}")
        inputs = _inputs(model, rng, 4)
        expected = _tflm(write_model(model), inputs, model)
        _assert_varied(f"{model.description} seed {seed}", expected)
        out_size = expected.shape[1]
        in_place = cgen.build_host_runner(files, tmp_path / f"in_place{seed}")
        copying = cgen.build_host_runner(files, tmp_path / f"copying{seed}",
                                         cflags=(*cgen.HOST_CFLAGS, cgen.HOST_COPYING_FLAG))
        np.testing.assert_array_equal(cgen.run_host(in_place, inputs, out_size), expected)
        np.testing.assert_array_equal(cgen.run_host(copying, inputs, out_size), expected)


def test_vww_in_place_and_copying_match_tflm_on_the_host(vww_int8_path, coco_vww_dir, tmp_path):
    model = read_model(vww_int8_path)
    files = cgen.generate_engine(model, tmp_path / "vww")
    inputs = _vww_photos(coco_vww_dir, 3)
    expected = _tflm(vww_int8_path.read_bytes(), inputs, model)
    assert len(np.unique(expected[:, 0])) > 1
    for flags in ((), (cgen.HOST_COPYING_FLAG,), ("-DEDGEQ_FAST_EMULATED",)):
        exe = cgen.build_host_runner(files, tmp_path / f"run{len(flags)}{flags[:1]}",
                                     cflags=(*cgen.HOST_CFLAGS, *flags))
        np.testing.assert_array_equal(cgen.run_host(exe, inputs, 2), expected)


API_PROBE = r"""
#include <stdio.h>
#include <string.h>
#include "edgeq_model.h"

/* The API's addresses and sizes, and one inference in place next to one copying. */
int main(void)
{
    static int8_t in[EDGEQ_INPUT_SIZE], out[EDGEQ_OUTPUT_SIZE];
    const size_t n = fread(in, 1, sizeof in, stdin);
    int k;
    int32_t total = 0;
    if (n != sizeof in) return 2;
    printf("same_first %d %d\n", edgeq_input() == edgeq_input_at(0),
           edgeq_output() == edgeq_output_at(0));
    printf("past_end %d %d %d %d\n", edgeq_input_at(EDGEQ_NUM_INPUTS) == NULL,
           edgeq_output_at(EDGEQ_NUM_OUTPUTS) == NULL, (int)edgeq_input_bytes(-1),
           (int)edgeq_output_bytes(EDGEQ_NUM_OUTPUTS));
    for (k = 0; k < EDGEQ_NUM_OUTPUTS; ++k) {
        printf("output %d at_input %d\n", k,
               (const void *)edgeq_output_at(k) == (const void *)edgeq_input_at(0));
        total += edgeq_output_bytes(k);
    }
    printf("sizes %d %d\n", (int)total, EDGEQ_OUTPUT_SIZE);
    memcpy(edgeq_input(), in, (size_t)edgeq_input_bytes(0));
    for (k = 1, total = edgeq_input_bytes(0); k < EDGEQ_NUM_INPUTS; ++k) {
        memcpy(edgeq_input_at(k), in + total, (size_t)edgeq_input_bytes(k));
        total += edgeq_input_bytes(k);
    }
    if (edgeq_invoke_in_place() != 0) return 1;
    for (k = 0, total = 0; k < EDGEQ_NUM_OUTPUTS; ++k) {
        memcpy(out + total, edgeq_output_at(k), (size_t)edgeq_output_bytes(k));
        total += edgeq_output_bytes(k);
    }
    fwrite(out, 1, sizeof out, stdout);
    memset(out, 0, sizeof out);
    if (edgeq_invoke(in, out) != 0) return 1;
    fwrite(out, 1, sizeof out, stdout);
    return 0;
}
"""


def test_the_in_place_api_gives_the_arena_addresses(tmp_path):
    """input() is input_at(0), indices past the end give NULL and 0, an output that is an
    alias of the input has the input's address, and the same inference in place and copying
    (sanitized) gives TFLM's outputs."""
    rng = np.random.default_rng(5)
    model = input_alias_and_pool(rng)
    files = cgen.generate_engine(model, tmp_path)
    (tmp_path / "probe.c").write_text(API_PROBE)
    exe = tmp_path / "probe"
    subprocess.run(["gcc", *cgen.HOST_CFLAGS, "-I", str(tmp_path), str(tmp_path / "probe.c"),
                    *map(str, files.sources), "-o", str(exe)], check=True, timeout=120)
    x = _inputs(model, rng, 1)
    run = subprocess.run([str(exe)], input=x.tobytes(), capture_output=True, timeout=60,
                         check=True).stdout
    expected = _tflm(write_model(model), x, model)[0]
    size = expected.size
    text, raw = run[:-2 * size].decode(), run[-2 * size:]
    assert "same_first 1 1" in text and "past_end 1 1 0 0" in text
    # output 0 is the pool (its own bytes), output 1 the reshaped input (the input's bytes)
    assert "output 0 at_input 0" in text and "output 1 at_input 1" in text
    assert f"sizes {size} {size}" in text
    np.testing.assert_array_equal(np.frombuffer(raw[:size], np.int8), expected)
    np.testing.assert_array_equal(np.frombuffer(raw[size:], np.int8), expected)


# ---- the firmware under QEMU ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["residual", "reshaped_output", "input_alias_and_pool",
                                  "two_inputs"])
def test_in_place_firmware_under_qemu_matches_tflm(name, tmp_path):
    rng = np.random.default_rng(31)
    model = MODELS[name](rng)
    fw = build_firmware(model, "mps2-an500", tmp_path / "fw", extra_cflags=WERROR)
    inputs = _inputs(model, rng, 4)
    result = run_qemu(fw.elf, inputs, timeout=60)
    expected = _tflm(write_model(model), inputs, model)
    np.testing.assert_array_equal(result.outputs, expected)
    assert result.labels == [int(np.argmax(e)) for e in expected]


def test_vww_firmware_has_no_caller_buffers(vww_int8_path, coco_vww_dir, tmp_path):
    """Under QEMU the in-place firmware matches TFLM, and its RAM is the arena: main.c keeps no
    input or output buffer (27,650 bytes before) and no test vector."""
    fw = build_firmware(vww_int8_path, "mps2-an500", tmp_path / "fw", extra_cflags=WERROR)
    inputs = _vww_photos(coco_vww_dir, 2)
    result = run_qemu(fw.elf, inputs, timeout=120)
    np.testing.assert_array_equal(result.outputs, _tflm(vww_int8_path.read_bytes(), inputs,
                                                        read_model(vww_int8_path)))
    symbols = _symbols(fw.elf)
    assert symbols["edgeq_arena"][1] == fw.sizes["arena"] == fw.engine.plan.lower_bound
    big = {name: size for name, (_, size, kind) in symbols.items()
           if kind in "bBdD" and size >= 1024}
    assert big == {"edgeq_arena": fw.sizes["arena"]}, big
    assert fw.sizes["ram"] <= 64 * 1024


# ---- board firmware: test vectors and expected outputs in flash -------------------------------


def _symbols(elf) -> dict[str, tuple[int, int, str]]:
    """name -> (address, size, nm type) of the sized symbols of an ELF."""
    out = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            found[parts[3]] = (int(parts[0], 16), int(parts[1], 16), parts[2])
    return found


def _section_of(elf, address: int) -> str:
    out = subprocess.run(["arm-none-eabi-objdump", "-h", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    for m in re.finditer(r"^\s*\d+\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)", out, re.M):
        name, size, vma = m.group(1), int(m.group(2), 16), int(m.group(3), 16)
        if vma <= address < vma + size:
            return name
    return "?"


def test_stm32h743_embeds_inputs_and_tflm_outputs_in_flash(vww_int8_path, coco_vww_dir,
                                                           tmp_path):
    inputs = _vww_photos(coco_vww_dir, 2)
    fw = build_firmware(vww_int8_path, "stm32h743", tmp_path / "h7", test_inputs=inputs,
                        extra_cflags=WERROR)
    expected = _tflm(vww_int8_path.read_bytes(), inputs, read_model(vww_int8_path))
    assert fw.test_count == 2
    np.testing.assert_array_equal(fw.expected_outputs, expected)  # computed with TFLM
    header = (fw.out_dir / "test_vectors.h").read_text()
    assert "#define EDGEQ_TEST_COUNT 2" in header
    body = header[header.index("edgeq_test_expected"):]
    assert all(f"{int(a)}, {int(b)}," in body for a, b in expected)
    symbols, compiled = _symbols(fw.elf), _symbols(fw.out_dir / "main.o")
    for name, size in (("edgeq_test_inputs", 2 * 27_648), ("edgeq_test_expected", 2 * 2)):
        assert compiled[name][1:] == (size, "r"), name  # read-only data of main.o
        address, nbytes, _ = symbols[name]
        # link.ld puts .rodata in the flash output section .text
        assert nbytes == size and 0x08000000 <= address < 0x08200000
        assert _section_of(fw.elf, address) == ".text"
    address, nbytes, _ = symbols["edgeq_arena"]
    assert 0x24000000 <= address and _section_of(fw.elf, address) == ".bss"
    # RAM: the arena and a few words of results; the vectors are not in it
    assert fw.sizes["arena"] <= fw.sizes["ram"] < fw.sizes["arena"] + 1024
    assert fw.sizes["flash"] > fw.sizes["model_flash"] + inputs.size
    main = (fw.out_dir / "main.c").read_text()
    assert "edgeq_run_tests(&edgeq_results, dwt_cycles, print_test)" in main
    assert '"EDGEQ_TEST %d %s label=%ld cycles=%lu us_at_480mhz=%lu wrong=%lu' in main


def test_vectors_add_flash_not_ram_and_given_outputs_are_embedded(tmp_path):
    rng = np.random.default_rng(4)
    model = residual(rng)
    inputs = _inputs(model, rng, 5)
    mine = np.full((5, model.output_tensors[0].nbytes), 7, np.int8)
    one = build_firmware(model, "stm32h743", tmp_path / "one", test_inputs=inputs[:1],
                         extra_cflags=WERROR)
    five = build_firmware(model, "stm32h743", tmp_path / "five", test_inputs=inputs,
                          expected_outputs=mine, extra_cflags=WERROR)
    none = build_firmware(model, "stm32h743", tmp_path / "none", extra_cflags=WERROR)
    np.testing.assert_array_equal(five.expected_outputs, mine)  # as given, not TFLM's
    assert "7, 7, 7, 7," in (five.out_dir / "test_vectors.h").read_text()
    per_vector = inputs[0].size + mine[0].size
    assert five.sizes["flash"] - one.sizes["flash"] >= 4 * per_vector
    # 12 bytes of results per input (label, mismatches, cycles) are all the RAM they cost
    assert five.sizes["ram"] - one.sizes["ram"] <= 4 * 12 + 8
    # without test inputs none are embedded, not an all-zero one, and the engine still is
    header = (none.out_dir / "test_vectors.h").read_text()
    assert "#define EDGEQ_TEST_COUNT 0" in header and "int8_t edgeq_test_inputs" not in header
    assert none.test_count == 0 and "edgeq_test_inputs" not in _symbols(none.elf)
    assert none.sizes["flash"] > none.sizes["model_flash"] > 0
    assert one.sizes["flash"] - none.sizes["flash"] >= per_vector


def test_generic_firmware_keeps_its_verdict_in_ram(tmp_path):
    rng = np.random.default_rng(8)
    model = opmodels.conv_pool_fc(rng)
    inputs = _inputs(model, rng, 3)
    fw = build_firmware(model, "nrf52840", tmp_path / "nrf", test_inputs=inputs,
                        extra_cflags=WERROR)
    np.testing.assert_array_equal(fw.expected_outputs, _tflm(write_model(model), inputs, model))
    symbols = _symbols(fw.elf)
    assert _section_of(fw.elf, symbols["edgeq_results"][0]) == ".bss"
    assert _section_of(fw.elf, symbols["edgeq_test_expected"][0]) == ".text"
    assert symbols["edgeq_test_inputs"][1] == inputs.size


HOST_CHECK = r"""
#include <stdio.h>
#include "test_vectors.h"

static uint32_t clock_now;
static uint32_t fake_cycles(void)
{
    clock_now += 1000u;
    return clock_now;
}

static void report(int n, uint32_t mismatches, int32_t label, uint32_t cycles)
{
    printf("EDGEQ_TEST %d %s label=%ld cycles=%lu wrong=%lu\n", n,
           mismatches == 0u ? "pass" : "fail", (long)label, (unsigned long)cycles,
           (unsigned long)mismatches);
}

struct edgeq_test_results_t edgeq_results;

int main(void)
{
    edgeq_run_tests(&edgeq_results, fake_cycles, report);
    printf("status=%08lx passed=%lu count=%lu done=%lu\n", (unsigned long)edgeq_results.status,
           (unsigned long)edgeq_results.passed, (unsigned long)edgeq_results.count,
           (unsigned long)edgeq_results.done);
    return 0;
}
"""


def _run_board_check(project, tmp_path, name) -> str:
    """The board firmware's own test_vectors.h and engine, compiled for the host (sanitized)
    with a main that prints what the board would."""
    (tmp_path / f"{name}_check.c").write_text(HOST_CHECK)
    exe = tmp_path / f"{name}_check"
    subprocess.run(["gcc", *cgen.HOST_CFLAGS, "-I", str(project), str(tmp_path / f"{name}_check.c"),
                    str(project / "edgeq_model.c"), str(project / "edgeq_kernels.c"), "-o",
                    str(exe)], check=True, timeout=120)
    return subprocess.run([str(exe)], capture_output=True, text=True, timeout=60,
                          check=True).stdout


def test_the_board_check_fails_on_a_wrong_expected_output(tmp_path):
    rng = np.random.default_rng(12)
    model = opmodels.conv_pool_fc(rng)
    inputs = _inputs(model, rng, 3)
    good = _tflm(write_model(model), inputs, model)
    bad = good.copy()
    bad[1, 3] = np.int8(int(bad[1, 3]) + 1 if bad[1, 3] < 127 else 126)  # one byte of one
    runs = {}
    for name, expected in (("good", None), ("bad", bad)):
        fw = build_firmware(model, "stm32h743", tmp_path / name, test_inputs=inputs,
                            expected_outputs=expected, extra_cflags=WERROR)
        runs[name] = _run_board_check(fw.out_dir, tmp_path, name)
    none = build_firmware(model, "stm32h743", tmp_path / "none", extra_cflags=WERROR)
    runs["none"] = _run_board_check(none.out_dir, tmp_path, "none")
    labels = [int(np.argmax(row)) for row in good]
    for n in range(3):
        assert f"EDGEQ_TEST {n} pass label={labels[n]} cycles=1000 wrong=0" in runs["good"]
    assert "status=50415353 passed=3 count=3 done=1" in runs["good"]  # "PASS"
    assert "EDGEQ_TEST 0 pass" in runs["bad"] and "EDGEQ_TEST 2 pass" in runs["bad"]
    assert f"EDGEQ_TEST 1 fail label={labels[1]} cycles=1000 wrong=1" in runs["bad"]
    assert "status=4641494c passed=2 count=3 done=1" in runs["bad"]  # "FAIL"
    assert "EDGEQ_TEST" not in runs["none"]
    assert "status=4e4f4e45 passed=0 count=0 done=1" in runs["none"]  # "NONE"


def test_test_vectors_must_fit_the_model(tmp_path):
    model = opmodels.conv_pool_fc(np.random.default_rng(1))
    x = _inputs(model, np.random.default_rng(1), 2)
    cases = [
        (dict(test_inputs=x[:, :-1]), r"test_inputs hold 382 values, not a whole number of "
                                      r"192-value rows"),
        (dict(test_inputs=x, expected_outputs=np.zeros((3, 10), np.int8)),
         r"3 expected outputs for 2 test inputs"),
        (dict(test_inputs=x, expected_outputs=np.zeros((2, 9), np.int8)),
         r"expected_outputs hold 18 values, not a whole number of 10-value rows"),
        (dict(expected_outputs=np.zeros((2, 10), np.int8)),
         r"expected_outputs were given without test_inputs"),
        (dict(test_inputs=x.astype(np.float32) / 128), r"test_inputs are float32 values"),
    ]
    for k, (kwargs, message) in enumerate(cases):
        with pytest.raises(DataError, match=message):
            build_firmware(model, "stm32h743", tmp_path / f"fw{k}", **kwargs)
        assert not (tmp_path / f"fw{k}").exists()  # refused before anything was written
