"""A firmware project for a board: the generated engine, startup code and vector table, a linker
script from the board's memory map, a main.c that runs test inputs and reports labels and timing,
and a plain Makefile, all rendered from firmware_templates/<board>/ (mps2-an500:
QEMU, semihosting file I/O, SysTick; stm32h743: USART3 console, DWT cycles; any other board: the
generic/ project, which leaves its results in RAM for a debugger). Then the ELF is built with
arm-none-eabi-gcc and measured with arm-none-eabi-size.

`build_firmware(model, board, out_dir)` checks the output folder and the memory plan against
the board *before* writing anything, builds in a sibling temporary folder and only then replaces
`out_dir` (only an empty one or edgeq's own, see edgeq.outputs), so a failed build leaves the
previous output intact.

Every main.c runs the engine in place (edgeq_input_at / edgeq_invoke_in_place /
edgeq_output_at): no input or output buffers besides the arena. A board firmware proves itself:
test_vectors.h (generic/ and stm32h743/) holds `test_inputs` and, for each, the outputs TFLM
gives (`expected_outputs`, or computed here with TFLM), both const in flash; main.c compares
every output byte and reports pass or fail per input (stm32h743: `EDGEQ_TEST` lines on the
console; generic: `edgeq_results` in RAM). Without test inputs none are embedded (not an
all-zero one) and the firmware says so (status NONE). The QEMU firmware reads its inputs from
inputs.bin instead and the Python side compares (edgeq.deploy.qemu).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np

from edgeq import __version__, data_dir
from edgeq.boards import Board, load_board
from edgeq.deploy import cgen
from edgeq.deploy.flash import MANIFEST  # what the folder was built for
from edgeq.errors import BoardFitError, DataError, ToolchainError, UnknownBoardError
from edgeq.outputs import abandon_folder, begin_folder, check_output_folder, finish_folder
from edgeq.tflite.model import Model
from edgeq.tflite.read import read_model

TOOLCHAIN_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi"
STACK_BYTES = 16 * 1024  # kept free above the heap; the kernels use well under 1 KiB
OPT_FLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-ffunction-sections", "-fdata-sections")
QEMU_NS_PER_TICK = 40  # mps2 SysTick runs at 25 MHz; with -icount shift=0, 1 ns = 1 instruction


def core_flags(board: Board) -> list[str]:
    """-mcpu/-mthumb/-mfloat-abi/-mfpu for the board's core."""
    flags = [f"-mcpu={board.core}", "-mthumb"]
    if board.fpu:
        flags += ["-mfloat-abi=hard", f"-mfpu={board.fpu}"]
    else:
        flags += ["-mfloat-abi=soft"]
    return flags


def qemu_command(board: Board) -> list[str]:
    """qemu-system-arm arguments (without -kernel) for a board that QEMU emulates."""
    if not board.emulate:
        raise UnknownBoardError(f"board {board.name} has no emulator",
                                "use --board mps2-an500 (QEMU's Cortex-M7) to run under QEMU")
    return [board.emulate.get("tool", "qemu-system-arm"), "-machine", board.emulate["machine"],
            "-nographic", "-monitor", "none", "-semihosting-config", "enable=on,target=native",
            "-icount", "shift=0"]


def find_tool(name: str, package: str = TOOLCHAIN_PACKAGES) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolchainError(f"{name} is not installed (or not on PATH)",
                             f"install it: sudo apt-get install {package}")
    return path


GENERIC = "generic"  # any Cortex-M board: results left in RAM for a debugger, no console


def template_dir(board_name: str) -> Path:
    """The board's own firmware templates, else the generic Cortex-M ones."""
    root = data_dir("firmware_templates")
    folder = root / board_name
    if not (folder / "main.c.j2").is_file() or not (folder / "link.ld.j2").is_file():
        folder = root / GENERIC
    return folder


@dataclass
class FirmwareResult:
    elf: Path | None  # None: the project was written but not built (compile=False)
    sizes: dict[str, int]  # flash, ram, text, data, bss, model_flash, engine_flash, arena
    out_dir: Path
    board: Board
    engine: cgen.EngineFiles | None = None
    commands: list[list[str]] = field(default_factory=list)
    test_count: int = 0  # test inputs embedded in test_vectors.h (or written to inputs.bin)
    expected_outputs: np.ndarray | None = None  # int8 [n, output bytes] embedded beside them


def _load(model_or_path) -> tuple[Model, str]:
    if isinstance(model_or_path, Model):
        return model_or_path, model_or_path.description or "a Model"
    path = Path(model_or_path)
    return read_model(path), path.name


def check_fit(model: Model, board: Board, arena_size: int, weight_bytes: int) -> None:
    """BoardFitError when the arena or the weights cannot fit the board (before any build)."""
    if arena_size > board.arena_bytes:
        raise BoardFitError(
            f"the tensor arena needs {arena_size:,} bytes but {board.name} has "
            f"{board.arena_bytes:,} for it ({arena_size - board.arena_bytes:,} too many)",
            "use a smaller input resolution or model width, or a board with more RAM")
    # the engine code and libc take roughly 40 KiB of flash besides the weights
    need = weight_bytes + 40 * 1024
    if need > board.flash_bytes:
        raise BoardFitError(
            f"the weights take {weight_bytes:,} bytes; with the engine that is about {need:,} "
            f"bytes, {need - board.flash_bytes:,} more than {board.name}'s "
            f"{board.flash_bytes:,} bytes of flash",
            _smaller_weights_hint(model))


def _smaller_weights_hint(model: Model) -> str:
    """What makes the weights smaller: 4 bits, unless they already are (2 and 3 bits are
    stored as INT4 too, so they save no flash)."""
    if any(t.dtype == "int4" for t in model.tensors):
        return ("the inner layers are already 4-bit: use a board with more flash "
                "(`edgeq boards`) or a smaller model (fewer channels)")
    return ("quantize the inner layers to 4 bits (`edgeq build --bits 4`), or pick bits per "
            "layer under the board's flash (`--bits mixed --budget-kb N`)")


def _size(objects: list[Path]) -> dict[str, tuple[int, int, int]]:
    tool = find_tool("arm-none-eabi-size")
    out = subprocess.run([tool, *map(str, objects)], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    result = {}
    for line in out.splitlines()[1:]:
        parts = line.split()
        result[Path(parts[-1]).name] = (int(parts[0]), int(parts[1]), int(parts[2]))
    return result


VECTORS_TEMPLATE = "test_vectors.h.j2"  # a board template folder with it embeds test vectors


def embeds_test_vectors(board: Board) -> bool:
    """True when the board's firmware carries its test vectors (and TFLM's outputs) in flash."""
    return (template_dir(board.template or board.name) / VECTORS_TEMPLATE).is_file()


def _render_project(board: Board, folder: Path, prefix: str, cflags: list[str],
                    ldflags: list[str], sources: list[str], test_inputs: np.ndarray,
                    expected_outputs: np.ndarray, arena_size: int) -> None:
    """Every <name>.j2 of the board's template folder becomes <name> in `folder`. Templates may
    include others by their path below firmware_templates/ ("generic/test_vectors.h.j2")."""
    from edgeq.deploy.flash import flash_command  # flash imports nothing from here

    templates = template_dir(board.template or board.name)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(templates), str(data_dir("firmware_templates"))]),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
        lstrip_blocks=True)
    env.filters["ints"] = cgen.int_lines
    flash = []
    if board.flasher:
        plan = flash_command(board, "fw.elf", dry_run=True, resolve=False)
        flash = [shlex.join(c) for c in plan.commands]
    context = {"version": __version__, "board": board, "prefix": prefix,
               "PREFIX": prefix.upper(), "stack_bytes": STACK_BYTES, "cflags": cflags,
               "ldflags": ldflags, "sources": sources,
               "qemu": qemu_command(board) if board.emulate else [],
               "flash": flash, "ns_per_tick": QEMU_NS_PER_TICK,
               "has_dwt": board.core not in ("cortex-m0plus",),  # ARMv6-M has no cycle counter
               "test_inputs": list(test_inputs), "expected_outputs": list(expected_outputs),
               "input_size": int(test_inputs.shape[1]),
               "output_size": int(expected_outputs.shape[1])}
    context["has_console"] = templates.name != GENERIC  # generic/ leaves results in RAM
    context["arena_size"] = arena_size
    for path in sorted(templates.glob("*.j2")):
        (folder / path.stem).write_text(env.get_template(path.name).render(**context))
    if not (folder / "README.md").exists():  # how to build, run or flash it: one for all boards
        (folder / "README.md").write_text(env.get_template("README.md.j2").render(**context))


def _test_vectors(model: Model, model_bytes, test_inputs, expected_outputs,
                  board: Board) -> tuple[np.ndarray, np.ndarray]:
    """(inputs [n, input bytes], expected [n, output bytes]) as int8; n = 0 without inputs.
    Expected outputs not given are TFLM's, for boards that embed them."""
    in_size = sum(t.nbytes for t in model.input_tensors)
    out_size = sum(t.nbytes for t in model.output_tensors)
    if test_inputs is None:
        if expected_outputs is not None:
            raise DataError("expected_outputs were given without test_inputs",
                            "pass the test inputs they belong to, or neither")
        return np.zeros((0, in_size), np.int8), np.zeros((0, out_size), np.int8)
    vectors = _int8_rows(test_inputs, in_size, "test_inputs",
                         f"the model's {len(model.inputs)} input(s) take {in_size} bytes")
    if expected_outputs is not None:
        expected = _int8_rows(expected_outputs, out_size, "expected_outputs",
                              f"the model's {len(model.outputs)} output(s) give {out_size} "
                              "bytes per input")
        if len(expected) != len(vectors):
            raise DataError(f"{len(expected)} expected outputs for {len(vectors)} test inputs",
                            "pass one expected output row per test input")
        return vectors, expected
    if not embeds_test_vectors(board):
        return vectors, np.zeros((len(vectors), out_size), np.int8)
    from edgeq.deploy.tflm import tflm_outputs

    return vectors, tflm_outputs(model_bytes(), vectors)


def _int8_rows(values, size: int, what: str, why: str) -> np.ndarray:
    array = np.asarray(values)
    if array.size == 0 or array.size % size:
        raise DataError(f"{what} hold {array.size} values, not a whole number of {size}-value "
                        f"rows ({why})", f"pass an int8 array of shape [n, {size}]")
    if array.dtype != np.int8:
        if not np.issubdtype(array.dtype, np.integer) or array.min() < -128 or array.max() > 127:
            raise DataError(f"{what} are {array.dtype} values outside int8 or not integers",
                            "pass int8 values (quantize them with the model's input scale "
                            "and zero point: edgeq.deploy.check.quantize_inputs)")
    return np.ascontiguousarray(array, dtype=np.int8).reshape(-1, size)


def build_firmware(tflite_path, board, out_dir, test_inputs=None, *, portable: bool = False,
                   extra_cflags=(), timeout: float = 600,
                   wide_int8_weights: bool | None = None, force: bool = False,
                   expected_outputs=None, compile: bool = True,
                   fit_check: bool = True, arena_budget: int | None = None) -> FirmwareResult:
    """Generate, build and measure the firmware for `board` (a name or Board).

    tflite_path: a .tflite path or a Model. test_inputs: optional int8 array [n, input bytes]
    (several model inputs back to back in a row), written to inputs.bin for `make run` (QEMU)
    and, for a board firmware (generic/, stm32h743/), embedded in flash with the outputs each
    must give: `expected_outputs` int8 [n, output bytes] (several outputs back to back), or,
    when not given, TFLM's outputs for the same inputs, so that the board always checks them.
    Without test_inputs a board firmware embeds none and reports that it has nothing to check.
    portable=True disables the DSP fast paths.
    wide_int8_weights: INT8 conv weights stored as int16 pairs (faster, twice their flash;
    see edgeq.deploy.cgen.engine_options); None keeps the caller's engine_options.
    force: replace `out_dir` even if edgeq did not make it (edgeq.outputs).
    compile=False writes the project without building it (no toolchain): `elf` is None and
    `sizes` holds only the planned arena. fit_check=False leaves the fit to the caller (the
    linker still refuses what overflows the board's memory map; edgeq build measures the ELF).
    arena_budget: bytes the tensor arena may take (default: the board's arena_kib); above it
    the engine streams its first ops (edgeq.deploy.stream) if that fits.
    """
    args = (tflite_path, board, out_dir, test_inputs, expected_outputs, portable, extra_cflags,
            timeout, force, compile, fit_check, arena_budget)
    if wide_int8_weights is None:
        return _build_firmware(*args)
    with cgen.engine_options(wide_int8_weights=wide_int8_weights):
        return _build_firmware(*args)


def _build_firmware(tflite_path, board, out_dir, test_inputs, expected_outputs, portable,
                    extra_cflags, timeout, force, compile, fit_check,
                    arena_budget) -> FirmwareResult:
    inputs = [] if isinstance(tflite_path, Model) else [tflite_path]
    check_output_folder(out_dir, force, inputs)  # before any work (contract 6)
    board = load_board(board) if isinstance(board, str) else board
    model, source = _load(tflite_path)
    budget = board.arena_bytes if arena_budget is None else arena_budget
    # raises UnsupportedOpError before anything is written; streams the first ops when the
    # layer-by-layer arena would not fit the budget (edgeq.deploy.stream)
    engine = cgen.lower_model(model, arena_budget=budget)
    if fit_check:
        check_fit(model, board, engine.plan.arena_size, engine.weight_bytes)

    def model_bytes() -> bytes:
        if isinstance(tflite_path, Model):
            from edgeq.tflite.write import write_model

            return write_model(tflite_path)
        return Path(tflite_path).read_bytes()

    vectors, expected = _test_vectors(model, model_bytes, test_inputs, expected_outputs, board)
    gcc = find_tool("arm-none-eabi-gcc") if compile else "arm-none-eabi-gcc"

    out = Path(out_dir)
    work = begin_folder(out, force, inputs)
    try:
        files = cgen.generate_engine(model, work, source=source, arena_budget=budget)
        cflags = [*core_flags(board), *OPT_FLAGS, *(["-DEDGEQ_PORTABLE"] if portable else []),
                  *extra_cflags]
        # Under QEMU the C library talks to the host by semihosting; a real board has none.
        # newlib-nano either way: a far smaller printf.
        specs = (["--specs=nano.specs", "--specs=rdimon.specs"] if board.emulate
                 else ["--specs=nano.specs", "--specs=nosys.specs"])
        ldflags = ["-T", "link.ld", *specs, "-Wl,--gc-sections", "-Wl,-Map=fw.map"]
        sources = ["startup.c", "main.c", *(s.name for s in files.sources)]
        _render_project(board, work, "edgeq", cflags, ldflags, sources, vectors, expected,
                        files.arena_size)
        if len(vectors):
            vectors.tofile(work / "inputs.bin")
        commands = []
        objects = []
        for src in sources:
            obj = work / (Path(src).stem + ".o")
            commands.append([gcc, *cflags, "-c", src, "-o", obj.name])
            objects.append(obj)
        commands.append([gcc, *cflags, *[o.name for o in objects], *ldflags, "-o", "fw.elf"])
        if compile:  # the images flashers other than openocd and pyocd take
            objcopy = find_tool("arm-none-eabi-objcopy")
            commands += [[objcopy, "-O", "binary", "fw.elf", "fw.bin"],
                         [objcopy, "-O", "ihex", "fw.elf", "fw.hex"]]
        _write_manifest(work, board, source, cflags)
        for cmd in commands if compile else []:
            result = subprocess.run(cmd, cwd=work, capture_output=True, text=True,
                                    timeout=timeout)
            if result.returncode != 0:
                raise ToolchainError(
                    f"building the firmware for {board.name} failed:\n"
                    f"{' '.join(cmd)}\n{result.stderr[-3000:]}",
                    _link_hint(result.stderr, model))
        sizes = _measure(work, objects, files.arena_size) if compile else {
            "arena": files.arena_size}
    except BaseException as e:
        raise abandon_folder(work, out, e) from None
    finish_folder(work, out, force, inputs)
    files = cgen.EngineFiles(out, out / files.header.name, out / files.source.name,
                             [out / k.name for k in files.kernels], files.arena_size,
                             files.weight_bytes, files.macs, files.plan, files.stage)
    return FirmwareResult(out / "fw.elf" if compile else None, sizes, out, board, files, commands,
                          test_count=len(vectors),
                          expected_outputs=expected if embeds_test_vectors(board) else None)


def _write_manifest(folder: Path, board: Board, source: str, cflags: list[str]) -> None:
    manifest = {"board": board.name, "core": board.core, "emulated": bool(board.emulate),
                "model": source, "elf": "fw.elf", "cflags": cflags, "edgeq_version": __version__}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _link_hint(stderr: str, model: Model) -> str:
    if "rdimon" in stderr or "cannot find -l" in stderr:
        return "install newlib for arm-none-eabi: sudo apt-get install libnewlib-arm-none-eabi"
    if "overflow" in stderr or "will not fit" in stderr:
        return "the model does not fit the board's memory: " + _smaller_weights_hint(model)
    return "report this as an edgeq bug, with the command above"


def _measure(work: Path, objects: list[Path], arena: int) -> dict[str, int]:
    sizes = _size([work / "fw.elf", *objects])
    text, data, bss = sizes["fw.elf"]
    model = sizes["edgeq_model.o"]
    kernels = sizes[Path(cgen.KERNEL_UNIT).stem + ".o"]  # every kernel the engine compiles
    return {"flash": text + data, "ram": data + bss, "text": text, "data": data, "bss": bss,
            "model_flash": model[0] + model[1], "engine_flash": kernels[0] + kernels[1],
            "arena": arena}

