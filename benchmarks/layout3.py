"""Benchmark section `layout3` (issue #16): which layout for 3-bit weights on the board, chosen
by measurement, under QEMU's Cortex-M7 (mps2-an500, `-icount shift=0`: instructions, not cycles).

    a. expanding N 3-bit weights to int4 (what eq_conv2d_packed does before the im2col path) and
    b. reading them one at a time (eq_weight, as the depthwise, fully connected and 1x1 record
       preparations do), per layout: the engine's dense stream (8 values in 3 bytes,
       edgeq.intmath.pack_bits, eq_unpack_int4 / eq_weight), bit planes (per 32 values three
       words, bit j of word k = bit k of value j; benchmark-only C in benchmarks/layout3_bench.c)
       and the values left in int4 nibbles (no unpack, 4/3 the flash);
    c. the person detector's mixed plan at <= 81 KiB stored (benchmarks.packed._plan_file) with
       its 3-bit layers packed (the engine's default) and left as INT4 containers
       (cgen.engine_options(packed_widths=(2,)): the 2-bit layers still packed): flash,
       instructions per photo and, from the -DEDGEQ_PROFILE builds, each 3-bit op's instructions
       in both, whose difference is what packing its weights costs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench_out"
OUT = CACHE / "layout3"
BENCH_C = Path(__file__).with_name("layout3_bench.c")
N_VALUES = 8192  # a multiple of 32 (whole bit-plane groups) and of 8 (whole dense triples)
SEED = 16
PHOTOS = 3  # train2017_* photos for the model's instructions (they barely vary per photo)
BUDGET_KB = 81
QEMU_TIMEOUT_S = 600
_LINE = re.compile(r"LAYOUT3 (\w+) ticks=(\d+) check=([0-9a-f]{8})")
# code (and table) symbols of each layout's unpack in the benchmark ELF
UNPACK_SYMBOLS = {"dense": ("dense_unpack", "eq_unpack_int4", "eq_unpack2", "eq_unpack3"),
                  "planes": ("bp_unpack_int4", "bp_spread"),
                  "planes_small_table": ("bp16_unpack_int4", "bp_spread16")}


def pack_planes(values: np.ndarray) -> np.ndarray:
    """3-bit values as bit planes: per 32 values (zero padded) three uint32 words, bit j of word
    k = bit k of value j."""
    v = np.asarray(values, np.int64).reshape(-1)
    v = np.pad(v, (0, -v.size % 32)).reshape(-1, 32) & 7
    weights = np.uint64(1) << np.arange(32, dtype=np.uint64)
    words = [((v >> k) & 1).astype(np.uint64) @ weights for k in range(3)]
    return np.stack(words, axis=1).astype(np.uint32).reshape(-1)


def _spread_table(bits: int) -> list[int]:
    """bit j of a `bits`-bit index -> bit 4j."""
    return [sum(((b >> j) & 1) << (4 * j) for j in range(bits)) for b in range(1 << bits)]


def _fnv(data: bytes) -> int:
    h = 2166136261
    for byte in data:
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h


def _running_sum(values) -> int:
    acc = 0
    for v in values:
        acc = (acc * 31 + int(v)) & 0xFFFFFFFF
    return acc


def _c_array(ctype: str, name: str, values) -> str:
    body = ",".join(str(int(v)) + ("u" if ctype == "uint32_t" else "") for v in values)
    return f"static const {ctype} {name}[] = {{{body}}};\n"


def micro(shared: Path, out: Path) -> dict:
    """(a) and (b): the benchmark firmware built, run under QEMU and checked."""
    from edgeq import intmath
    from edgeq.boards import load_board
    from edgeq.deploy import cgen
    from edgeq.deploy.firmware import (
        OPT_FLAGS,
        QEMU_NS_PER_TICK,
        build_firmware,
        core_flags,
        find_tool,
        qemu_command,
    )

    rng = np.random.default_rng(SEED)
    values = rng.integers(-4, 4, N_VALUES)
    dense = intmath.pack_bits(values, 3)
    int4 = intmath.pack_int4(values)
    planes = pack_planes(values)
    layouts = {"dense": dense.nbytes, "planes": planes.nbytes, "int4": int4.nbytes}
    # startup.c and link.ld of the board's firmware project (any model: only those are used)
    board = load_board("mps2-an500")
    project = out / "project"
    build_firmware(shared / "models" / "vww_96_int8.tflite", board, project, compile=False,
                   force=True)
    work = out / "bench"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in ("startup.c", "link.ld"):
        shutil.copy(project / name, work / name)
    for name in cgen.kernel_files({"CONV_2D", cgen.PACKED_CONV}):
        shutil.copy(cgen.kernel_dir() / name, work / name)
    shutil.copy(BENCH_C, work / BENCH_C.name)
    (work / "layout3_data.h").write_text(
        f"#define N_VALUES {N_VALUES}\n"
        f"#define BP_SPREAD {','.join(f'{v}u' for v in _spread_table(8))}\n"
        f"#define BP_SPREAD16 {','.join(f'{v}u' for v in _spread_table(4))}\n"
        + _c_array("int8_t", "dense", dense.view(np.int8))
        + _c_array("int8_t", "int4", int4.view(np.int8))
        + _c_array("uint32_t", "planes", planes))
    gcc = find_tool("arm-none-eabi-gcc")
    subprocess.run([gcc, *core_flags(board), *OPT_FLAGS, "-Werror", "-I.", "startup.c",
                    BENCH_C.name, "-T", "link.ld", "--specs=nano.specs", "--specs=rdimon.specs",
                    "-Wl,--gc-sections", "-o", "bench.elf"], cwd=work, check=True,
                   capture_output=True, timeout=300)
    run = subprocess.run([*qemu_command(board), "-kernel", "bench.elf"], cwd=work,
                         capture_output=True, text=True, timeout=QEMU_TIMEOUT_S,
                         stdin=subprocess.DEVNULL)
    if "LAYOUT3_DONE" not in run.stdout:
        raise RuntimeError(f"layout3 benchmark failed under QEMU:\n{run.stdout}{run.stderr}")
    found = {m.group(1): (int(m.group(2)) * QEMU_NS_PER_TICK, int(m.group(3), 16))
             for m in _LINE.finditer(run.stdout)}
    int4_hash = _fnv(int4.tobytes())
    expected = {"expand_dense": int4_hash, "expand_planes": int4_hash,
                "expand_planes_small_table": int4_hash,
                "read_dense": _running_sum(values), "read_planes": _running_sum(values),
                "read_int4": _running_sum(values),
                "read_loop_alone": _running_sum(np.arange(N_VALUES) & 7)}
    wrong = {k: v for k, (_, v) in found.items() if expected.get(k) != v}
    if wrong or set(found) != set(expected):
        raise RuntimeError(f"layout3 benchmark: wrong results {wrong} ({sorted(found)})")
    sizes = _symbol_sizes(work / "bench.elf")
    code = {layout: sum(sizes.get(s, 0) for s in symbols)
            for layout, symbols in UNPACK_SYMBOLS.items()}
    return {"n": N_VALUES, "bytes": layouts,
            "instructions": {k: v for k, (v, _) in found.items()}, "unpack_code_bytes": code,
            "symbols": {s: sizes.get(s) for ss in UNPACK_SYMBOLS.values() for s in ss}}


def _symbol_sizes(elf: Path) -> dict[str, int]:
    nm = shutil.which("arm-none-eabi-nm")
    text = subprocess.run([nm, "-S", str(elf)], capture_output=True, text=True, check=True,
                          timeout=60).stdout
    sizes = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4:
            sizes[parts[3]] = sizes.get(parts[3], 0) + int(parts[1], 16)
    return sizes


def _three_bit_ops(model) -> dict[int, dict]:
    """op index -> its 3-bit weights as the engine stores them: kind, kernel, values stored
    (CONV_2D rows padded to filter_stride), bytes as a dense stream and as bit planes."""
    from edgeq.deploy import cgen

    engine = cgen.lower_model(model)
    arrays = {a.name: a for a in engine.arrays}
    ops = {}
    for index, (op, step) in enumerate(zip(model.ops, engine.steps, strict=True)):
        fields = dict(step.fields)
        if op.kind not in cgen.WEIGHTED or int(fields.get("weight_bits", 8)) != 3:
            continue
        x, w = model.tensors[op.inputs[0]], model.tensors[op.inputs[1]]
        count = (w.shape[0] * cgen.filter_stride(x, w) if op.kind == "CONV_2D"
                 else w.num_elements)
        ops[index] = {"kind": op.kind, "function": step.function, "shape": list(w.shape),
                      "values": int(count), "dense_bytes": int(arrays[fields["weights"]].nbytes),
                      "planes_bytes": 12 * -(-count // 32), "int4_bytes": -(-count // 2)}
    return ops


def whole_model(shared: Path, out: Path) -> dict:
    """(c): the 81 KiB mixed plan with its 3-bit layers packed and as INT4 containers."""
    import tf_keras

    from benchmarks.packed import _data, _plan_file
    from edgeq.deploy import cgen
    from edgeq.deploy.check import model_input_spec, quantize_inputs
    from edgeq.deploy.firmware import build_firmware
    from edgeq.deploy.qemu import run_qemu
    from edgeq.deploy.tflm import tflm_outputs
    from edgeq.tflite.read import read_model

    calib, _ = _data(shared)
    model = tf_keras.models.load_model(shared / "models" / "vww_96.h5", compile=False)
    path, info = _plan_file(model, calib, BUDGET_KB)
    x = quantize_inputs(calib.x[:PHOTOS], model_input_spec(path)).reshape(PHOTOS, -1)
    expected = tflm_outputs(path.read_bytes(), x)
    tflite = read_model(path)
    ops = _three_bit_ops(tflite)
    runs = {}
    for name, widths in (("packed", (2, 3)), ("int4", (2,))):
        with cgen.engine_options(packed_widths=widths):
            if name == "int4":
                assert not _three_bit_ops(tflite)  # the option did leave them INT4
            fw = build_firmware(path, "mps2-an500", out / name, force=True)
            profile = build_firmware(path, "mps2-an500", out / f"{name}_profile", force=True,
                                     extra_cflags=["-DEDGEQ_PROFILE"])
        result = run_qemu(fw.elf, x, timeout=QEMU_TIMEOUT_S)
        if not np.array_equal(result.outputs, expected):
            raise RuntimeError(f"layout3: the {name} firmware differs from TFLM")
        per_op = run_qemu(profile.elf, x[:1], timeout=QEMU_TIMEOUT_S).op_instructions
        runs[name] = {"flash": fw.sizes["flash"], "model_flash": fw.sizes["model_flash"],
                      "instructions": result.instructions,
                      "op_instructions": per_op, "macs": fw.engine.macs}
    # the packed engine without the 2/3-bit depthwise quads (eq_depthwise_low.c switched off)
    off = build_firmware(path, "mps2-an500", out / "packed_no_dw_quads_profile", force=True,
                         extra_cflags=["-DEDGEQ_PROFILE", "-DEQ_DW_LOW_QUADS=0"])
    no_quads = run_qemu(off.elf, x[:1], timeout=QEMU_TIMEOUT_S).op_instructions
    runs["packed"]["flash_no_dw_quads"] = build_firmware(
        path, "mps2-an500", out / "packed_no_dw_quads", force=True,
        extra_cflags=["-DEQ_DW_LOW_QUADS=0"]).sizes["flash"]
    for index, op in ops.items():
        op["instructions_packed"] = runs["packed"]["op_instructions"][index]
        op["instructions_int4"] = runs["int4"]["op_instructions"][index]
        op["instructions_packed_no_dw_quads"] = no_quads[index]
    return {"plan": info["plan"], "photos": PHOTOS, "ops": {str(k): v for k, v in ops.items()},
            "runs": runs}


ADOPT_MIN_SHARE = 0.01  # fixed before measuring: an alternative must save >= 1 % of the model


def layout3(shared: Path) -> dict:
    micro_result = micro(shared, OUT)
    model_result = whole_model(shared, OUT)
    return {"micro": micro_result, "model": model_result,
            "decision": decide(micro_result, model_result)}


def decide(micro_result: dict, model_result: dict) -> dict:
    """The bit planes (1 KiB table) against the dense stream on the plan: the instructions
    they would save (per value expanded, measured in (a), times the values the plan's
    eq_conv2d_packed layers expand; per value read in (b) times the values the other 3-bit
    layers read once) and the flash they would add (weights and unpack code + table)."""
    n, ins = micro_result["n"], micro_result["instructions"]
    per_expand = (ins["expand_dense"] - ins["expand_planes"]) / n
    per_read = (ins["read_dense"] - ins["read_planes"]) / n
    ops = model_result["ops"].values()
    expanded = sum(o["values"] for o in ops if o["function"] == "eq_conv2d_packed")
    read = sum(o["values"] for o in ops if o["function"] != "eq_conv2d_packed")
    saved = per_expand * expanded + per_read * read
    code = micro_result["unpack_code_bytes"]
    flash = (sum(o["planes_bytes"] - o["dense_bytes"] for o in ops)
             + code["planes"] - code["dense"])
    packed = model_result["runs"]["packed"]
    total = float(np.median(packed["instructions"]))
    share = saved / total
    adopt = flash <= 0 and share >= ADOPT_MIN_SHARE
    return {"per_value_expand_saved": per_expand, "per_value_read_saved": per_read,
            "values_expanded": expanded, "values_read": read, "instructions_saved": saved,
            "share": share, "flash_added": flash, "adopt": adopt}


def render(name: str, result: dict, cmd: str) -> str:
    m, model, d = result["micro"], result["model"], result["decision"]
    n, ins, code = m["n"], m["instructions"], m["unpack_code_bytes"]
    loop = ins["read_loop_alone"] / n
    lines = [f"## {TITLE}", "", f"Command: `{cmd}` (section wall time "
             f"{result.get('wall_seconds')} s; {result.get('machine')})", "",
             f"(a, b) {n:,} seeded random 3-bit values, benchmark firmware "
             "benchmarks/layout3_bench.c under QEMU (instructions, not cycles):", "",
             "| layout | bytes / weight | expand to int4: instr / weight | unpack code + table B "
             "| read one (eq_weight): instr / weight | of it the loop |",
             "|---|---:|---:|---:|---:|---:|"]
    rows = [("dense stream, 8 values in 3 bytes (the engine's: eq_unpack_int4, eq_weight)",
             "dense", "expand_dense", "dense", "read_dense"),
            ("bit planes, 1 KiB spread table (benchmark-only C)", "planes", "expand_planes",
             "planes", "read_planes"),
            ("bit planes, 32-byte spread table (benchmark-only C)", "planes",
             "expand_planes_small_table", "planes_small_table", "read_planes"),
            ("int4 nibbles, no packing (eq_weight at 4 bits)", "int4", None, None, "read_int4")]
    for label, size, expand, code_key, read in rows:
        lines.append(
            f"| {label} | {m['bytes'][size] / n:.3f} | "
            f"{'none' if expand is None else f'{ins[expand] / n:.2f}'} | "
            f"{'—' if code_key is None else f'{code[code_key]:,}'} | {ins[read] / n:.2f} | "
            f"{loop:.2f} |")
    runs = model["runs"]
    med = {k: int(np.median(r["instructions"])) for k, r in runs.items()}
    lines += ["", f"(c) The person detector's mixed plan at <= {BUDGET_KB} KiB stored "
              f"(widths: {_widths(model['plan'])}), {model['photos']} train2017_* photos, "
              "mps2-an500 DSP build, outputs identical to TFLM in both:", "",
              "| 3-bit layers | flash B | model object B | instructions / photo | instr / MAC |",
              "|---|---:|---:|---:|---:|"]
    for key, label in (("packed", "packed, dense stream (the engine's default)"),
                       ("int4", "as INT4 containers (engine_options(packed_widths=(2,)))")):
        r = runs[key]
        lines.append(f"| {label} | {r['flash']:,} | {r['model_flash']:,} | {med[key]:,} | "
                     f"{med[key] / r['macs']:.3f} |")
    lines += ["", "Per 3-bit op (-DEDGEQ_PROFILE builds, first photo):", "",
              "| op | kind | kernel | weights | values stored | dense B | bit planes B | "
              "int4 B | instructions packed | as INT4 | packing costs | per value "
              "| packed without the depthwise quads |",
              "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    cost = 0
    for index, o in model["ops"].items():
        extra = o["instructions_packed"] - o["instructions_int4"]
        cost += extra
        lines.append(f"| {index} | {o['kind']} | {o['function']} | {'x'.join(map(str, o['shape']))} "
                     f"| {o['values']:,} | {o['dense_bytes']:,} | {o['planes_bytes']:,} | "
                     f"{o['int4_bytes']:,} | {o['instructions_packed']:,} | "
                     f"{o['instructions_int4']:,} | {extra:,} | {extra / o['values']:.2f} | "
                     f"{o['instructions_packed_no_dw_quads']:,} |")
    verdict = ("adopt the bit planes" if d["adopt"] else "keep the dense stream")
    quads = sum(o["instructions_packed_no_dw_quads"] - o["instructions_packed"]
                for o in model["ops"].values() if o["kind"] == "DEPTHWISE_CONV_2D")
    lines += ["", f"The 2/3-bit depthwise quads (eq_depthwise_low.c) save {quads:,} "
              "instructions on the plan's 3-bit depthwise op(s) (profiled, first photo) for "
              f"{runs['packed']['flash'] - runs['packed']['flash_no_dw_quads']:+,} B of flash."]
    lines += [
        "", f"Packing the 3-bit layers saves {runs['int4']['flash'] - runs['packed']['flash']:,} B "
        f"of flash and costs {med['packed'] - med['int4']:,} instructions per photo "
        f"({(med['packed'] - med['int4']) / med['packed']:.1%} of the model; the 3-bit ops' "
        f"profiled differences add up to {cost:,}, the rest is the other ops': the 8- and 4-bit "
        "depthwise ops compile a little differently in a kernel unit with eq_depthwise_low.c).",
        "",
        f"Decision: {verdict}. Bit planes (1 KiB table) would save "
        f"{d['per_value_expand_saved']:.2f} instructions per value expanded "
        f"({d['values_expanded']:,} values in the eq_conv2d_packed layers) and "
        f"{d['per_value_read_saved']:.2f} per value read ({d['values_read']:,} values in the "
        "other 3-bit layers, read once; counted at eq_weight's difference, though the depthwise "
        f"quads read four at a time): {d['instructions_saved']:,.0f} instructions, "
        f"{d['share']:.2%} of the model's {med['packed']:,} (computed from the measured per-value "
        f"costs, not run), for {d['flash_added']:+,} B of flash (weights + unpack code and "
        f"table). The criterion, fixed before measuring: no added flash and at least "
        f"{ADOPT_MIN_SHARE:.0%} of the model's instructions saved. The 32-byte-table variant "
        "costs no more flash than the dense stream but saves only "
        f"{(ins['expand_dense'] - ins['expand_planes_small_table']) / n:.2f} instructions per "
        "value expanded.", ""]
    lines += [f"- {note}" for note in NOTES] + [""]
    return "\n".join(lines)


def _widths(plan: dict) -> str:
    widths = sorted(plan.values())
    return ", ".join(f"W{b}: {widths.count(b)}" for b in sorted(set(widths), reverse=True))


TITLE = "3-bit weight layout on the board, chosen by measurement (issue #16)"
NOTES = [
    "Instructions: QEMU mps2-an500 with -icount shift=0, SysTick ticks x 40 (a tick is 40 "
    "instructions: the (a, b) figures are whole calls over all values, resolution 40 "
    "instructions); instructions, not Cortex-M7 cycles.",
    "(a) expand: the engine's eq_unpack_int4 (what eq_conv2d_packed runs on every inference "
    "before the int4 im2col path) against bit-plane unpacks written for this benchmark only "
    "(benchmarks/layout3_bench.c: per 32 values three words, bit j of word k = bit k of value "
    "j; each plane byte spread to one bit a nibble by a table, the sign plane x 12 into nibble "
    "bits 2 and 3); every result checked against the int4 bytes edgeq.intmath.pack_int4 gives. "
    "int4 nibbles need no unpack: the kernel reads them in place (4/3 the flash).",
    "(b) read one: a loop of eq_weight(w, i, bits) over all values, bits read from a volatile "
    "as the kernels read it from their parameters (the depthwise, fully connected and 1x1 "
    "record preparations), and its bit-plane equivalent; 'of it the loop' is the same loop "
    "with no weight read. Sums checked against Python's.",
    "Unpack code + table: arm-none-eabi-nm sizes in the benchmark ELF (the dense one includes "
    "the 2-bit path and its 16-byte table).",
    "(c) plan: benchmarks.packed._plan_file (quantize(vww_96, train2017, 'brecq', 'mixed', "
    f"{BUDGET_KB}), cached in bench_out/); flash = text + data of the ELF (arm-none-eabi-size); "
    "instructions / photo: median over the photos of the non-profile build; per op: the "
    "-DEDGEQ_PROFILE builds. 'Without the depthwise quads': the packed engine built with "
    "-DEQ_DW_LOW_QUADS=0, as before eq_depthwise_low.c: 2/3-bit weights then fail "
    "eq_dw_quad_bits (int8, or int4 over an even channel count), which takes a 3x3 depthwise "
    "op off the whole-image assembly band (eq_dw_one_band) and reads its weights channel by "
    "channel through eq_weight (eq_dw_pair_weights). eq_depthwise_low.c (only in the units of "
    "engines with 2/3-bit 3x3 depthwise weights) reads four at a time; the other engines' "
    "code is unchanged.",
]
