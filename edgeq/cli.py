"""The `edgeq` command: a thin click layer over the modules; all logic lives there.

Heavy modules (TensorFlow) are imported inside the commands that need them, so `edgeq check`,
`edgeq boards` and `edgeq models` work where only numpy and a TFLite runtime are installed.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import warnings
from pathlib import Path

import click
from rich import box
from rich.console import Console
from rich.table import Table

from edgeq import __version__
from edgeq.data import percent
from edgeq.errors import EdgeqError

console = Console(stderr=True, log_path=False)  # log lines without "build.py:77"
out_console = Console()
BITS_CHOICES = ["8", "4", "3", "2", "mixed"]
# edgeq.learn.quantize.METHODS plus rex (tests/test_misuse.py keeps them equal); listed here so
# that --method is checked without importing TensorFlow
METHOD_NAMES = ("minmax", "mse", "adaround", "brecq", "adaquant", "genie", "rex")
MIN_CALIBRATION = 8  # edgeq.learn.quantize.MIN_SAMPLES
_settings = {"verbose": False}


def _bits(value: str) -> int | str:
    return value if value == "mixed" else int(value)


def expected_errors(fn):
    """Print EdgeqError as a message with its hint (no traceback) and exit non-zero."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgeqError as e:
            # soft_wrap: one line each, wrapped by the terminal, so a path in it stays whole
            # when copied (rich would break it at the console's width).
            console.print(f"[bold red]error:[/bold red] {e.message}", highlight=False,
                          soft_wrap=True)
            if e.hint:
                console.print(f"  [yellow]→ {e.hint}[/yellow]", highlight=False, soft_wrap=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            console.print("[bold red]interrupted[/bold red]: nothing was written to the output folder")
            sys.exit(130)

    return wrapper


def _setup_console(verbose: bool) -> None:
    """Quiet unless --verbose: TensorFlow's C++ logs off, warnings and log records as one rich
    line without source lines, third-party warnings hidden."""
    _settings["verbose"] = verbose
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    warnings.showwarning = _show_warning
    from rich.logging import RichHandler

    # does nothing where logging is configured already (by an embedding program, or pytest)
    logging.basicConfig(level=logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=console, show_time=False, show_path=False)])
    for name in ("tensorflow", "absl", "h5py", "matplotlib"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if _settings["verbose"] or Path(filename).resolve().is_relative_to(Path(__file__).parent):
        console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)


def _import_tensorflow() -> None:
    """Import TensorFlow (and tf_keras) now. Unless --verbose, with the process's stderr closed
    meanwhile: its CUDA probes, cuInit errors and oneDNN notes are written by C++ before any
    Python or environment setting can silence them."""
    if "tensorflow" in sys.modules:
        return
    if _settings["verbose"]:
        import tensorflow  # noqa: F401
        return
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe logs now, not at the first op
        try:
            import tf_keras  # noqa: F401
        except ImportError:
            pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _table(title: str, columns, keep=(0,), right=(), **options) -> Table:
    """A compact table that fits the terminal: long cells wrap; the `keep` columns (names)
    are never wrapped or cut; the `right` columns (numbers) are right-aligned."""
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True, **options)
    for i, col in enumerate(columns):
        table.add_column(col, no_wrap=i in keep, overflow="fold",
                         justify="right" if i in right else "left")
    return table


def _check_out_file(path, *inputs) -> None:
    from edgeq.outputs import check_output_file

    if path is not None and path != "-":
        check_output_file(path, inputs)


def _check_data(path) -> None:
    from edgeq.data import check_data_source

    if path is not None:
        check_data_source(path)


EXISTING = click.Path(exists=True)
EXISTING_FILE = click.Path(exists=True, dir_okay=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeq")
@click.option("-v", "--verbose", is_flag=True,
              help="Show TensorFlow's own logs and third-party warnings.")
def main(verbose):
    """edgeq: put a Keras model on a microcontroller, and prove what runs there.

    \b
    Example (the embedded demo: trains a small Fashion-MNIST model and builds it):
      edgeq build --board cortex-m7
    """
    _setup_console(verbose)


# ---------------------------------------------------------------------------------------- boards
@main.group(invoke_without_command=True)
@click.pass_context
@expected_errors
def boards(ctx):
    """List the boards edgeq knows (boards/*.yaml).

    \b
    Example:
      edgeq boards
      edgeq boards show cortex-m7
    """
    if ctx.invoked_subcommand is not None:
        return
    from edgeq.boards import aliases, list_boards

    table = _table("boards", ("name", "core", "MHz", "flash\nKiB", "RAM\nKiB", "arena\nKiB",
                              "FPU", "DSP", "flash with"), keep=range(8))
    for b in list_boards():
        tool = (b.flasher or {}).get("tool", "—") if b.flasher else "emulated only"
        table.add_row(b.name, b.core, f"{b.clock_mhz:g}", str(b.flash_kib), str(b.ram_kib),
                      str(b.arena_kib), b.fpu or "none", "yes" if b.dsp else "no", tool)
    out_console.print(table)
    out_console.print("aliases: " + ", ".join(f"{k} → {v}" for k, v in sorted(aliases().items())))


@boards.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the board as JSON.")
@expected_errors
def boards_show(name, as_json):
    """Show one board (a name, an alias such as cortex-m7, or a board YAML file).

    \b
    Example:
      edgeq boards show stm32h743
    """
    from edgeq.boards import load_board

    board = load_board(name)
    _show_fields(f"{board.name}: {board.description}", board.to_dict(), as_json)


def _show_fields(title: str, fields: dict, as_json: bool) -> None:
    """One record as JSON, or as a two-column table."""
    if as_json:
        click.echo(json.dumps(fields, indent=2))
        return
    table = _table(title, ("field", "value"), show_header=False)
    for k, v in fields.items():
        table.add_row(k, json.dumps(v) if isinstance(v, (dict, list)) else str(v))
    out_console.print(table)


# ---------------------------------------------------------------------------------------- models
@main.group(invoke_without_command=True)
@click.pass_context
@expected_errors
def models(ctx):
    """List the model zoo (models/*.yaml).

    \b
    Example:
      edgeq models
      edgeq models show person_detect
    """
    if ctx.invoked_subcommand is not None:
        return
    from edgeq.learn.zoo import list_cards

    table = _table("models", ("name", "input", "classes", "description"), keep=(0, 1, 2))
    for c in list_cards():
        table.add_row(c.name, "×".join(map(str, c.input_shape)), str(c.num_classes), c.description)
    out_console.print(table)


@models.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the card as JSON.")
@expected_errors
def models_show(name, as_json):
    """Show one model card.

    \b
    Example:
      edgeq models show fmnist
    """
    from edgeq.learn.zoo import load_card

    card = load_card(name)
    _show_fields(card.name, card.to_dict(), as_json)


# ----------------------------------------------------------------------------------------- train
def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(bar_width=None), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


@main.command()
@click.option("--model", "model_name", default="fmnist", show_default=True, help="Zoo model to train.")
@click.option("--data", type=EXISTING, help="Training data (image folder, .npz or IDX). "
              "Default for fmnist: Fashion-MNIST from /usr/share/datasets/fashion-mnist.")
@click.option("--epochs", type=int, help="Epochs (default: the model card's).")
@click.option("--batch-size", type=int, help="Batch size (default: the model card's).")
@click.option("--lr", type=float, help="Peak learning rate (default: the model card's; QGT: 5e-4, 2e-3 below 4 bits).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_path", default=None,
              help="Where to save the result [default: NAME.h5; with --qgt: NAME_qgt.tflite].")
@click.option("--qgt", is_flag=True, help="Quantization Guided Training toward --bits, exported as .tflite.")
@click.option("--keras-model", type=EXISTING, help="--qgt: start from this trained Keras model.")
@click.option("--bits", type=click.Choice(["2", "3", "4", "mixed"]), default="4", show_default=True,
              help="--qgt: weight bits of the inner layers (first and last stay at 8); mixed: 2 bits "
              "with the compression bottlenecks lifted to their suggested width.")
@click.option("--regularizer", type=click.Choice(["l2grid", "sin2", "none"]), default="l2grid",
              show_default=True, help="--qgt: the pull toward the grid (none = ablation).")
@click.option("--checkpoint-dir", type=click.Path(), help="--qgt: checkpoints; an interrupted run resumes.")
@click.option("--distribute", type=click.Choice(["mirrored", "multiworker"]),
              help="--qgt: tf.distribute strategy (multiworker reads TF_CONFIG).")
@expected_errors
def train(model_name, data, epochs, batch_size, lr, seed, out_path, qgt, keras_model, bits, regularizer,
          checkpoint_dir, distribute):
    """Train a zoo model (float) on its data and save it as a Keras model; with --qgt, train
    toward low-bit weights and write the .tflite with edgeq's exact writer.

    \b
    Examples:
      edgeq train --model fmnist --epochs 12 --out fmnist.h5
      edgeq train --qgt --keras-model fmnist.h5 --bits 4 --epochs 2 --checkpoint-dir ckpt/
      edgeq train --qgt --keras-model fmnist.h5 --bits mixed --epochs 4
    """
    from edgeq.learn.zoo import load_card

    card = load_card(model_name)
    out_path = out_path or (f"{model_name}_qgt.tflite" if qgt else f"{model_name}.h5")
    _check_data(data)
    _check_out_file(out_path, data, keras_model)
    _import_tensorflow()
    from edgeq.build import BuildConfig, load_build_data
    from edgeq.learn.train import train as run_train
    from edgeq.learn.zoo import build_model

    cfg = BuildConfig(model=model_name, data=data, seed=seed, eval_limit=None)
    if qgt and keras_model:  # the data must fit the user's model, not the card's
        import numpy as np

        from edgeq.data import check_labels, output_classes
        from edgeq.errors import DataError
        from edgeq.learn.modelio import load_keras_model

        model = load_keras_model(keras_model).model
        shape = tuple(int(d) for d in model.inputs[0].shape[1:])
        if data is None and shape != tuple(card.input_shape):
            raise DataError(f"{keras_model}: input {shape}, but the {card.name} card's data is "
                            f"{tuple(card.input_shape)}", "pass --data for your model")
        own = (card, card.preprocess.color, card.preprocess.scale, card.labels) if data is None \
            else (None, "grayscale" if shape[-1] == 1 else "rgb", 255.0, None)
        train_ds, calib, test = load_build_data(cfg, own[0], shape, *own[1:])
        for ds in (train_ds, test):
            check_labels(ds.y, output_classes(int(np.prod(model.outputs[0].shape[1:]))),
                         str(data or ds.source))
    else:
        model = None
        train_ds, calib, test = load_build_data(cfg, card, card.input_shape, card.preprocess.color,
                                                card.preprocess.scale, card.labels)
    if qgt:
        _train_qgt(card, model, train_ds, calib, test, epochs or 2, batch_size or 128, lr,
                   bits, regularizer, checkpoint_dir, distribute, seed, out_path)
        return
    model = build_model(card)
    epochs = epochs or card.train.get("epochs", 10)
    with _progress() as progress:
        result = run_train(model, train_ds, test, epochs, batch_size or card.train.get("batch_size", 128),
                           lr or card.train.get("learning_rate", 1e-3), seed, progress)
    _save_model(model, out_path)
    console.print(f"trained {model_name} for {epochs} epochs in {result.seconds:.0f} s: "
                  f"training accuracy {result.history['accuracy'][-1]:.4f}; "
                  f"validation accuracy {result.val_accuracy:.4f}; saved {out_path}")


def _train_qgt(card, model, train_ds, calib, test, epochs, batch_size, lr, bits, regularizer,
               checkpoint_dir, distribute, seed, out_path) -> None:
    from edgeq.learn.qgt.bottlenecks import mixed_plan
    from edgeq.learn.qgt.training import finish, recipe, train_qgt
    from edgeq.learn.zoo import build_model

    model = model if model is not None else build_model(card)
    plan = mixed_plan(model, calib) if bits == "mixed" else int(bits)
    settings = recipe(plan)
    result = train_qgt(model, train_ds, test, plan, epochs, batch_size=batch_size,
                       learning_rate=lr or settings["learning_rate"], regularizer=regularizer,
                       checkpoint_dir=checkpoint_dir, distribute=distribute, seed=seed,
                       ste_start=settings["ste_start"], progress=True)
    data, _ = finish(result, calib.x, path=out_path)
    last = result.history[-1] if result.history else {}
    if bits == "mixed":
        console.print("mixed plan (bottlenecks lifted): "
                      + ", ".join(f"{name} {b}" for name, b in result.plan.items()))
    console.print(f"QGT {'mixed' if bits == 'mixed' else f'W{bits}'}: {result.steps} steps in {result.seconds:.0f} s, mean distance to the "
                  f"grid {result.grid_distance():.3f} LSB, last epoch {last}; wrote {out_path} "
                  f"({len(data):,} bytes)")


def _save_model(model, path: str) -> None:
    from edgeq.outputs import staged_file

    with staged_file(path) as tmp:
        model.save(tmp)


# ----------------------------------------------------------------------------------------- build
@main.command()
@click.option("--board", default="cortex-m7", show_default=True, help="Board name, alias or YAML file.")
@click.option("--model", "model_name", help="Zoo model name (see `edgeq models`).")
@click.option("--keras-model", type=EXISTING, help="Your Keras model: .h5, .keras or SavedModel folder.")
@click.option("--weights", type=EXISTING, help="Weights to load into the model.")
@click.option("--data", type=EXISTING, help="Calibration/evaluation data: image folder, .npz or IDX.")
@click.option("--out", default="out", show_default=True,
              help="Output folder: a new or empty one, or edgeq's own from an earlier run "
              "(replaced atomically).")
@click.option("--epochs", type=int, help="Train the zoo model this many epochs first.")
@click.option("--calib-samples", type=click.IntRange(min=MIN_CALIBRATION), default=256, show_default=True)
@click.option("--eval-limit", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Evaluate on at most this many samples.")
@click.option("--bits", type=click.Choice(BITS_CHOICES), default="8", show_default=True,
              help="Weight bits of the inner layers (first and last stay at 8), or mixed precision.")
@click.option("--method", type=click.Choice(METHOD_NAMES),
              help="Quantization method [default: brecq below 8 bits, minmax at 8, genie with --zero-shot].")
@click.option("--budget-kb", type=float, help="Budget in KiB of stored model (packed weights + per-channel parameters) for --bits mixed [default: the board's flash; with --train, QGT's bottleneck plan].")
@click.option("--iters", type=int, help="Reconstruction steps per block or layer [default: per method].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--unsafe", is_flag=True, help="Allow Lambda layers and custom objects (runs code from the file).")
@click.option("--no-baseline", is_flag=True, help="Skip measuring TensorFlow's own INT8 PTQ beside edgeq.")
@click.option("--zero-shot", is_flag=True,
              help="Calibrate with no data: --calib-samples images synthesized from the model's "
              "BatchNorm statistics (Genie-D), method genie by default; --data, if given, only "
              "evaluates.")
@click.option("--expansion", type=int, default=2, show_default=True,
              help="--method rex: orders K of the residual expansion.")
@click.option("--sparsity", type=float, default=1.0, show_default=True,
              help="--method rex: fraction G of output channels expanded beyond order 0.")
@click.option("--train", "train_qgt", is_flag=True,
              help="Fine-tune toward --bits with Quantization Guided Training before export "
              "(needs labelled --data); the report ranks the compression bottlenecks.")
@click.option("--train-epochs", type=int, default=2, show_default=True, help="--train: QGT epochs.")
@click.option("--synth-iterations", type=int,
              help="--zero-shot: optimization steps per batch of synthetic images [default: edgeq.learn.synth's].")
@click.option("--no-firmware", is_flag=True,
              help="Stop at the .tflite and C arrays: no board firmware, no run under QEMU.")
@click.option("--firmware-eval-limit", type=click.IntRange(min=0), default=64, show_default=True,
              help="Evaluation samples the firmware runs under QEMU (seeded, stratified; 0: none).")
@click.option("--ram-budget-kb", type=click.FloatRange(min=1),
              help="RAM for the tensor arena in KiB [default: the board's]; above it the "
                   "first layers run streamed, a few rows at a time.")
@click.option("--test-inputs", type=click.IntRange(min=0), default=4, show_default=True,
              help="Evaluation inputs embedded in the board firmware with TFLM's outputs, "
                   "checked on the board at boot.")
@click.option("--int2-fc", is_flag=True,
              help="Also write model_int2fc.tflite for LiteRT: FULLY_CONNECTED layers the plan "
                   "gives 2 bits stored as INT2 (four a byte), checked by LiteRT to give "
                   "model.tflite's outputs. TFLM cannot run it; the firmware uses model.tflite.")
@click.option("--json", "json_out", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--force", is_flag=True, help="Replace an --out folder that edgeq did not make "
              "(and everything in it); ship a model that fails a build check.")
@expected_errors
def build(board, model_name, keras_model, weights, data, out, epochs, calib_samples, eval_limit,
          bits, method, budget_kb, iters, seed, unsafe, no_baseline, zero_shot, expansion, sparsity,
          train_qgt, train_epochs, synth_iterations, no_firmware, firmware_eval_limit,
          ram_budget_kb, test_inputs, int2_fc, json_out, force):
    """Quantize a model for a board: .tflite, C arrays, fit check, on-device checks, report.

    With no model it runs the embedded demo: train `fmnist` briefly and build it.

    \b
    Examples:
      edgeq build --board cortex-m7
      edgeq build --board stm32h743 --model person_detect_rgb --weights vww_96.h5 --data photos/
      edgeq build --board nrf52840 --keras-model my_model.keras --data calib.npz --out build/
      edgeq build --board stm32f746 --model person_detect --weights pd.h5 --data photos/ --bits 4
      edgeq build --keras-model vww_96.h5 --zero-shot --bits 4 --out vww_zs/
      edgeq build --keras-model fmnist.h5 --data /usr/share/datasets/fashion-mnist --train --bits 2
    """
    from edgeq.build import BuildConfig, preflight, run_build

    cfg = BuildConfig(board=board, model=model_name, keras_model=keras_model, weights=weights,
                      data=data, out=out, epochs=epochs, calib_samples=calib_samples,
                      eval_limit=eval_limit, seed=seed, unsafe=unsafe, bits=_bits(bits),
                      method=method, budget_kb=budget_kb, iters=iters, baseline=not no_baseline,
                      zero_shot=zero_shot, synth_iterations=synth_iterations, train=train_qgt,
                      train_epochs=train_epochs, expansion=expansion, sparsity=sparsity,
                      firmware=not no_firmware, firmware_eval_limit=firmware_eval_limit,
                      test_inputs=test_inputs, ram_budget_kb=ram_budget_kb, int2_fc=int2_fc,
                      force=force)
    _check_data(data)
    preflight(cfg)
    _import_tensorflow()
    result = run_build(cfg, console=console, progress_factory=_progress)
    if json_out:
        click.echo(json.dumps(json.loads((result.out_dir / "report.json").read_text()), indent=2))
        return
    _print_build_summary(result)


def _print_build_summary(result) -> None:
    r = result.report
    data = r["data"]
    table = _table(f"{r['model']['name']} on {r['board']['name']}: accuracy on "
                   f"{data['evaluation_samples']} evaluation samples of {data['source']} "
                   f"({data.get('evaluation_chosen', 'all samples')})",
                   ("model", "samples", "top-1", "agreement", "with"), keep=(1, 2, 3, 4),
                   right=(1, 2, 3))
    for row in r["accuracy"]:
        agree = row.get("agreement")
        samples = f"{row['samples']:,}" if row.get("samples") else ""
        table.add_row(row["name"], samples, percent(row.get("accuracy")),
                      "" if agree is None else percent(agree),
                      "" if agree is None else (row.get("agreement_with") or ""))
    out_console.print(table)
    _print_per_class(r["accuracy"], data.get("classes") or [])
    from edgeq.report import firmware_lines, int2fc_line

    for line in firmware_lines(r["fit"], r.get("firmware") or {}):
        out_console.print(line)
    files = "model.tflite, model_data.h/.c, report.json, report.html"
    if (r.get("firmware") or {}).get("built"):
        files += ", firmware/ (fw.elf; `edgeq flash " + str(result.out_dir) + "`)"
    elif r.get("firmware", {}).get("reason", "").startswith("arm-none-eabi-gcc"):
        files += ", firmware/ (sources only)"
    int2fc = r.get("int2_fc")
    if int2fc and int2fc["file"]:
        files += f", {int2fc['file']}"
    out_console.print(f"outputs in {result.out_dir}/: {files}")
    if int2fc:
        out_console.print(int2fc_line(int2fc))


def _print_per_class(rows: list[dict], classes: list[str]) -> None:
    """Per-class top-1 of the float model and of TFLM (what the board runs) side by side, and
    TFLM's confusion counts: a table each, one row per true class."""
    float_row = next((row for row in rows if row["name"] == "float"), None)
    tflm = next((row for row in rows if "TFLM" in row["name"] and row.get("confusion")), None)
    if tflm is None:
        return
    names = [classes[c] if c < len(classes) else str(c) for c in range(len(tflm["confusion"]))]
    per_class = _table("per class", ("class", "float", "TFLM"), keep=(0, 1, 2), right=(1, 2))
    for c, name in enumerate(names):
        ours = (float_row or {}).get("per_class_accuracy") or []
        per_class.add_row(name, percent(ours[c]) if c < len(ours) else "",
                          percent(tflm["per_class_accuracy"][c]))
    out_console.print(per_class)
    confusion = _table("TFLM confusion counts (rows: true class, columns: predicted)",
                       ("true", *(str(c) for c in range(len(names)))), keep=(0,),
                       right=tuple(range(1, len(names) + 1)))
    for c, name in enumerate(names):
        confusion.add_row(f"{c} {name}", *(str(n) for n in tflm["confusion"][c]))
    out_console.print(confusion)

# ---------------------------------------------------------------------------------------- export
@main.command()
@click.argument("keras_model", type=EXISTING)
@click.option("--data", required=True, type=EXISTING, help="Calibration data: image folder, .npz or IDX.")
@click.option("--out", "out_path", default="model.tflite", show_default=True, help="The .tflite to write.")
@click.option("--bits", type=click.Choice(["8", "4"]), default="8", show_default=True,
              help="Weight bits of the inner layers (first and last layer stay at 8).")
@click.option("--io", "io_dtype", type=click.Choice(["int8", "float32"]), default="int8", show_default=True,
              help="Type of the model's input and output tensors.")
@click.option("--calib-samples", type=click.IntRange(min=MIN_CALIBRATION), default=256, show_default=True)
@click.option("--weights", type=EXISTING, help="Weights to load into the model.")
@click.option("--unsafe", is_flag=True, help="Allow Lambda layers and custom objects (runs code from the file).")
@expected_errors
def export(keras_model, data, out_path, bits, io_dtype, calib_samples, weights, unsafe):
    """Quantize a Keras model (min-max) and write it with edgeq's own TFLite writer.

    INT8 activations; INT8 or INT4 weights (per channel; per tensor for fully connected).

    \b
    Example:
      edgeq export model.h5 --data photos/ --bits 4 --out model_w4.tflite
    """
    _check_data(data)
    _check_out_file(out_path, keras_model, data, weights)
    _import_tensorflow()
    from edgeq.build import BuildConfig, load_build_data
    from edgeq.learn.export import export_tflite
    from edgeq.learn.modelio import load_keras_model, load_weights

    loaded = load_keras_model(keras_model, unsafe=unsafe)
    if weights:
        load_weights(loaded.model, weights)
    shape = loaded.input_shape
    color = "grayscale" if shape[-1] == 1 else "rgb"
    cfg = BuildConfig(data=data, calib_samples=calib_samples)
    _, calib, _ = load_build_data(cfg, None, shape, color, 255.0, None)
    data_bytes = export_tflite(loaded.model, calib.x, int(bits), out_path, io_dtype)
    console.print(f"wrote {out_path}: {len(data_bytes):,} bytes, W{bits}A8, {len(calib)} calibration samples")


# -------------------------------------------------------------------------------------- quantize
@main.command()
@click.argument("keras_model", type=EXISTING)
@click.option("--data", required=True, type=EXISTING, help="Calibration data: image folder, .npz or IDX.")
@click.option("--out", "out_path", default="model.tflite", show_default=True, help="The .tflite to write.")
@click.option("--method", type=click.Choice(METHOD_NAMES),
              help="Quantization method [default: brecq below 8 bits, minmax at 8].")
@click.option("--expansion", type=int, default=2, show_default=True,
              help="--method rex: orders K of the residual expansion.")
@click.option("--sparsity", type=float, default=1.0, show_default=True,
              help="--method rex: fraction G of output channels expanded beyond order 0.")
@click.option("--bits", type=click.Choice(BITS_CHOICES), default="4", show_default=True,
              help="Weight bits of the inner layers (first and last stay at 8), or mixed precision.")
@click.option("--budget-kb", type=float, help="Budget in KiB of stored model (packed weights + per-channel parameters) for --bits mixed.")
@click.option("--fisher", is_flag=True, help="brecq: weight the block loss by the squared KL gradient.")
@click.option("--iters", type=int, help="Optimization steps per block or layer [default: per method].")
@click.option("--calib-samples", type=click.IntRange(min=MIN_CALIBRATION), default=1024, show_default=True)
@click.option("--input-range", type=(float, float), metavar="LO HI",
              help="The model's input domain (e.g. 0 1): the input tensor's int8 range, instead "
              "of the data's min/max. Use it with synthetic data from `edgeq synth`.")
@click.option("--report", "report_path", type=click.Path(), help="Also write the quantization report (JSON).")
@click.option("--unsafe", is_flag=True, help="Allow Lambda layers and custom objects (runs code from the file).")
@expected_errors
def quantize(keras_model, data, out_path, method, expansion, sparsity, bits, budget_kb, fisher,
             iters, calib_samples, input_range, report_path, unsafe):
    """Post-training quantization with reconstruction (BRECQ, AdaRound, AdaQuant) or range
    methods, optionally mixed precision under a weight budget; writes the .tflite with edgeq's
    writer and prints per-layer bits and SQNR.

    \b
    Examples:
      edgeq quantize vww_96.h5 --data photos/ --method brecq --bits 4 --out vww_w4.tflite
      edgeq quantize model.h5 --data calib.npz --bits mixed --budget-kb 81 --report q.json
      edgeq quantize model.h5 --data synth.npz --method rex --bits 4 --expansion 2 --sparsity 0.5
    """
    from edgeq.errors import DataError

    if bits == "mixed" and method == "rex":
        raise DataError("--method rex takes one width, not mixed", "pass --bits 8, 4, 3 or 2")
    if bits == "mixed" and budget_kb is None:
        raise DataError("--bits mixed needs a weight budget",
                        "pass --budget-kb N (KiB of weights, e.g. what the board's flash leaves)")
    _check_data(data)
    _check_out_file(out_path, keras_model, data)
    _check_out_file(report_path, keras_model, data, out_path)
    _import_tensorflow()
    from edgeq.build import BuildConfig, load_build_data
    from edgeq.learn.export import to_tflite_model
    from edgeq.learn.modelio import load_keras_model
    from edgeq.learn.quantize import quantize as run_quantize
    from edgeq.outputs import write_file
    from edgeq.tflite.write import write_model

    loaded = load_keras_model(keras_model, unsafe=unsafe)
    shape = loaded.input_shape
    cfg = BuildConfig(data=data, calib_samples=calib_samples)
    _, calib, _ = load_build_data(cfg, None, shape, "grayscale" if shape[-1] == 1 else "rgb", 255.0, None)
    if input_range is not None:
        from edgeq.data import check_input_domain

        check_input_domain(calib.x, *input_range, str(data),
                           f"scale the data to --input-range {input_range[0]:g} {input_range[1]:g} "
                           "(0-255 pixels: divide by 255), or pass the data's own range")
    if method == "rex":
        _quantize_rex(loaded.model, calib.x, _bits(bits), expansion, sparsity, input_range,
                      out_path, report_path)
        return
    qgraph, report = run_quantize(loaded.model, calib.x, method, _bits(bits), budget_kb,
                                  iters=iters, fisher=fisher, calib_samples=calib_samples,
                                  input_range=input_range)
    data_bytes = write_model(to_tflite_model(qgraph))
    write_file(out_path, data_bytes)
    if report_path:
        write_file(report_path, json.dumps(report.to_dict(), indent=2, default=str))
    table = _table(f"{report.method} {bits}-bit: per-layer bits and output SQNR",
                   ("layer", "bits", "SQNR min-max dB", "SQNR dB"))
    for row in report.layers:
        table.add_row(row["name"], str(row["bits"]), _db(row.get("sqnr_minmax_db")), _db(row.get("sqnr_db")))
    out_console.print(table)
    console.print(f"{report.summary()}; wrote {out_path} ({len(data_bytes):,} bytes)")


def _quantize_rex(model, calib_x, bits, expansion, sparsity, input_range, out_path,
                  report_path) -> None:
    from edgeq.learn.graph import capture
    from edgeq.learn.quant.rex import export_rex, rex_quantize
    from edgeq.outputs import write_file

    graph = capture(model).with_input_range(input_range)
    qgraph, info = rex_quantize(graph, bits, expansion, sparsity, calib_x=calib_x)
    data = export_rex(qgraph, out_path)
    if report_path:
        write_file(report_path, json.dumps(info.to_dict(), indent=2, default=str))
    console.print(f"REx W{bits} × {expansion} orders (G = {sparsity:g}): {len(info.layers)} layers "
                  f"expanded, weights {info.weight_bytes / 1024:.1f} KiB; wrote {out_path} "
                  f"({len(data):,} bytes)")


def _db(value) -> str:
    return "–" if value is None else f"{value:.1f}"


# ----------------------------------------------------------------------------------------- synth
@main.command()
@click.argument("keras_model", type=EXISTING)
@click.option("--out", "out_path", default="synthetic.npz", show_default=True,
              help="The .npz of images (x) that every --data option accepts.")
@click.option("--samples", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--iterations", type=int, help="Optimization steps per batch [default: edgeq.learn.synth's].")
@click.option("--preview", type=click.Path(), help="Also write a preview grid PNG here.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--unsafe", is_flag=True, help="Allow Lambda layers and custom objects (runs code from the file).")
@expected_errors
def synth(keras_model, out_path, samples, batch_size, iterations, preview, seed, unsafe):
    """Zero-shot calibration data (Genie-D): images synthesized from the model's BatchNorm
    statistics alone, for quantizing without any real data.

    \b
    Example:
      edgeq synth vww_96.h5 --samples 256 --out synth.npz --preview synth.png
      edgeq quantize vww_96.h5 --data synth.npz --bits 4 --method genie --input-range 0 1
    """
    _check_out_file(out_path, keras_model)
    _check_out_file(preview, keras_model, out_path)
    _import_tensorflow()
    from edgeq.learn.modelio import load_keras_model
    from edgeq.learn.synth import preview_png, save_npz, synthesize

    model = load_keras_model(keras_model, unsafe=unsafe).model
    kwargs = {"iterations": iterations} if iterations else {}
    with _progress() as progress:
        task = progress.add_task("synthesize", total=None)

        def advance(done, total):
            progress.update(task, completed=done, total=total)

        x = synthesize(model, n=samples, batch_size=batch_size, seed=seed, progress=advance, **kwargs)
    save_npz(x, out_path)
    if preview:
        preview_png(x, preview)
    console.print(f"wrote {out_path}: {len(x)} synthetic images of shape {x.shape[1:]}")


# ----------------------------------------------------------------------------------------- check
@main.command()
@click.argument("model_path", type=EXISTING_FILE)
@click.option("--data", required=True, type=EXISTING, help="Image folder, .npz or IDX files.")
@click.option("--limit", type=click.IntRange(min=1), help="Use at most this many samples.")
@click.option("--target", type=click.Choice(["host", "qemu"]), default="host", show_default=True,
              help="host: LiteRT, TFLM and edgeq's reference; qemu: edgeq's firmware on an emulated "
                   "Cortex-M7 (mps2-an500) compared with TFLM and LiteRT.")
@click.option("--out", "out_dir", default="firmware-check", show_default=True,
              help="Where the QEMU firmware is built (--target qemu): a new or empty folder, or "
              "edgeq's own.")
@click.option("--force", is_flag=True, help="--target qemu: replace an --out folder edgeq did not make.")
@click.option("--timeout", type=float, default=600, show_default=True, help="QEMU time limit in seconds.")
@click.option("--json", "json_path", type=click.Path(), help="Also write the result as JSON here ('-' = stdout).")
@expected_errors
def check(model_path, data, limit, target, out_dir, force, timeout, json_path):
    """Top-1 accuracy of an integer .tflite on-device: through LiteRT, TFLM and edgeq's reference
    interpreter (host, needs no TensorFlow), or as edgeq's firmware under QEMU. Any input shape
    from an .npz: y of N labels gives top-1, y of the output's shape (regression targets) the
    MAE, no y compares the runtimes; every check counts the raw outputs that differ from TFLM.

    \b
    Examples:
      edgeq check out/model.tflite --data photos/ --json check.json
      edgeq check vww_96_int8.tflite --data photos/ --target qemu --limit 32
      edgeq check autoencoder.tflite --data windows.npz --target qemu
    """
    from edgeq.outputs import check_output_folder

    _check_data(data)
    _check_out_file(json_path, model_path, data)
    if target == "qemu":
        check_output_folder(out_dir, force, [model_path, data, json_path])
        payload = _check_qemu(model_path, data, limit, out_dir, timeout, force)
        if json_path:
            _write_json(payload, json_path)
        return
    from edgeq.deploy.check import check_command

    result = check_command(model_path, data, limit, None if json_path == "-" else json_path)
    if json_path == "-":
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        out_console.print(result.table())


def _write_json(payload: dict, json_path: str) -> None:
    text = json.dumps(payload, indent=2)
    if json_path == "-":
        click.echo(text)
        return
    from edgeq.outputs import write_file

    write_file(json_path, text + "\n")


def _check_qemu(model_path, data, limit, out_dir, timeout, force) -> dict:
    from edgeq.deploy.qemu import qemu_check_command

    payload, result = qemu_check_command(model_path, data, out_dir, limit, timeout, force)
    _print_qemu_check(payload, f"edgeq firmware under QEMU (mps2-an500): "
                               f"{Path(model_path).name}, {payload['samples']} samples "
                               f"({payload['chosen']})")
    if not result.identical:
        console.print(f"[bold red]firmware outputs differ from TFLM in {result.mismatches} values[/]")
    return payload


def _print_qemu_check(payload: dict, title: str) -> None:
    """The QEMU check as people read it: percentages, counts with separators, sizes apart."""
    identical, values = payload["identical_to_tflm"], payload["output_values"]
    labels = payload["task"] == "classification"
    rows = [*([("top-1 on the device", percent(payload["accuracy"])),
               *[(f"  class {name}", percent(acc)) for name, acc in
                 zip(payload["classes"], payload["per_class_accuracy"] or [], strict=False)]]
              if labels else []),
            *([("MAE vs target on the device", f"{payload['mae_target']:.4g}")]
              if payload["mae_target"] is not None else []),
            ("outputs identical to TFLM", f"yes ({values:,} values)" if identical
             else f"no: {payload['mismatched_values']:,} of {values:,} values differ, max "
                  f"{payload['max_lsb_tflm']} LSB, MAE {payload['mae_tflm']:.4g}"),
            *([("labels = TFLM's", percent(payload["label_agreement_tflm"])),
               ("labels = LiteRT's", percent(payload["label_agreement_litert"]))]
              if payload["label_agreement_tflm"] is not None else []),
            ("largest difference from LiteRT", f"{payload['max_lsb_litert']} LSB "
             f"({payload['mismatched_values_litert']:,} of {values:,} values differ)"),
            ("instructions per inference", f"{payload['instructions_per_inference']:,}"),
            ("MACs per inference", f"{payload['macs']:,}"),
            ("instructions per MAC", f"{payload['instructions_per_mac']:.3f}")]
    table = _table(title, ("check", "result"), show_header=False)
    for row in rows:
        table.add_row(*row)
    out_console.print(table)
    sizes = _table("sizes (arm-none-eabi-size; arena: the memory plan)", ("section", "bytes"))
    for name, value in {**payload["sizes"], "TFLM arena": payload["tflm_arena"]}.items():
        sizes.add_row(name, f"{value:,}")
    out_console.print(sizes)


# -------------------------------------------------------------------------------------- firmware
@main.command()
@click.argument("model_path", type=EXISTING_FILE)
@click.option("--board", default="cortex-m7", show_default=True,
              help="Board name, alias or YAML file (as `edgeq build`; mps2-an500: QEMU's).")
@click.option("--out", "out_dir", default="firmware", show_default=True,
              help="Project folder: a new or empty one, or edgeq's own (replaced atomically).")
@click.option("--force", is_flag=True, help="Replace an --out folder that edgeq did not make.")
@click.option("--portable", is_flag=True, help="Portable C kernels only (no DSP fast paths).")
@click.option("--wide-int8-weights", is_flag=True,
              help="Store INT8 conv weights as int16 pairs: fewer instructions, twice their flash.")
@click.option("--ram-budget-kb", type=click.FloatRange(min=1),
              help="RAM for the tensor arena in KiB [default: the board's]; above it the "
                   "first layers run streamed, a few rows at a time.")
@expected_errors
def firmware(model_path, board, out_dir, force, portable, wide_int8_weights, ram_budget_kb):
    """Generate the C engine for an integer .tflite and build a firmware project for a board
    (arm-none-eabi-gcc); report flash and RAM from arm-none-eabi-size.

    \b
    Examples:
      edgeq firmware out/model.tflite --board mps2-an500 --out fw/
      edgeq firmware vww_96_int8.tflite --board stm32h743 --out fw-h7/
    """
    from edgeq.boards import load_board
    from edgeq.deploy.firmware import build_firmware

    board = load_board(board)
    budget = None if ram_budget_kb is None else int(ram_budget_kb * 1024)
    result = build_firmware(model_path, board, out_dir, portable=portable,
                            wide_int8_weights=wide_int8_weights, force=force,
                            arena_budget=budget)
    table = _table(f"firmware for {result.board.name}: {result.elf}", ("section", "size"),
                   show_header=False)
    for k, v in result.sizes.items():
        table.add_row(k, f"{v:,} bytes")
    out_console.print(table)
    stage = result.engine.stage
    if stage is not None:
        out_console.print(f"ops {stage.ops[0]} to {stage.ops[-1]} streamed, {stage.band} output "
                          f"row(s) at a time, to fit the arena in {budget or board.arena_bytes:,}"
                          " bytes")


@main.command()
@click.argument("target", required=False, type=click.Path())
@click.option("--board", help="Board name, alias or YAML file [default: the one TARGET was built for].")
@click.option("--elf", "elf_path", type=click.Path(),
              help="The firmware to flash, instead of TARGET's firmware/fw.elf.")
@click.option("--tool", type=click.Choice(["openocd", "pyocd", "teensy_loader_cli"]),
              help="Override the board's flasher.")
@click.option("--dry-run", is_flag=True, help="Print the commands instead of running them.")
@expected_errors
def flash(target, board, elf_path, tool, dry_run):
    """Flash the firmware of a build folder to the board it was built for, with the flasher
    its board file names (openocd, pyocd, teensy_loader_cli).

    TARGET is the --out folder of `edgeq build` (its firmware/fw.elf) or of `edgeq firmware`.
    An ELF built for another board, or for QEMU, is refused.

    \b
    Examples:
      edgeq flash out/ --dry-run
      edgeq flash fw-h7/ --board stm32h743 --tool pyocd
    """
    from edgeq.deploy.flash import flash_command, locate_firmware

    spec, elf = locate_firmware(target, board, elf_path)
    plan = flash_command(spec, elf, dry_run=dry_run, tool=tool)
    if dry_run:
        click.echo(plan.describe())
    else:
        console.print(f"flashed {elf} to {plan.board} with {plan.tool}")


if __name__ == "__main__":
    main()
