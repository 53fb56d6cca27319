"""The pipeline behind `edgeq build`: BuildConfig -> stages -> outputs + report.

Stages: load -> data -> (train) -> quantize -> C arrays -> fit check -> on-device checks ->
report. Everything is written into a temporary folder beside the output folder and renamed into
place at the end, so a failed or interrupted build leaves the previous output as it was.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeq import __version__
from edgeq.boards import Board, load_board
from edgeq.data import (
    check_input_domain,
    check_labels,
    class_labels,
    classification,
    fashion_mnist,
    load_dataset,
    output_classes,
    stratified_subset,
)
from edgeq.errors import BoardFitError, DataError, EdgeqError, ToolchainError, UnsupportedOpError
from edgeq.learn.zoo import ModelCard, load_card
from edgeq.outputs import check_output_folder, staged_folder

DEMO_MODEL = "fmnist"
INPUT_DOMAIN = (0.0, 1.0)  # every model card's preprocessing: pixels / 255
MIN_CALIBRATION = 8


@dataclass
class BuildConfig:
    board: str = "cortex-m7"
    model: str | None = None  # zoo model name
    keras_model: str | None = None  # path to .h5 / .keras / SavedModel
    weights: str | None = None
    data: str | None = None
    out: str = "out"
    epochs: int | None = None  # train a zoo model first (the demo trains briefly)
    calib_samples: int = 256
    eval_limit: int | None = 2000
    seed: int = 0
    unsafe: bool = False
    bits: int | str = 8  # weight bits of the inner layers (first and last stay at 8), or "mixed"
    method: str | None = None  # quantization method (edgeq.learn.quantize.METHODS); None: brecq < 8 bits
    budget_kb: float | None = None  # weight budget for bits="mixed"; default: the board's flash
    iters: int | None = None  # reconstruction steps per block or layer; None: the method's default
    baseline: bool = True  # also measure TensorFlow's own INT8 PTQ on the same data (contract 4)
    zero_shot: bool = False  # calibrate on Genie-D images made from the model alone (no data)
    synth_iterations: int | None = None  # Genie-D steps per batch; None: edgeq.learn.synth's default
    expansion: int = 2  # method "rex": orders K of the residual expansion
    sparsity: float = 1.0  # method "rex": fraction G of output channels that get orders >= 1
    train: bool = False  # fine-tune toward `bits` with QGT before export (needs labelled data)
    train_epochs: int = 2  # QGT epochs
    force: bool = False  # replace an --out folder edgeq did not make; ship a model that fails a check
    firmware: bool = True  # the board firmware in OUT/firmware/, sized from its ELF
    firmware_eval_limit: int = 64  # inputs the firmware runs under QEMU (seeded, stratified)
    test_inputs: int = 4  # evaluation inputs embedded in the board firmware with TFLM's outputs
    ram_budget_kb: float | None = None  # the tensor arena's budget; default: the board's arena_kib
    int2_fc: bool = False  # also model_int2fc.tflite: 2-bit FULLY_CONNECTED weights as INT2, for LiteRT

    @property
    def arena_budget(self) -> int | None:
        """--ram-budget-kb in bytes (None: the board's arena_kib)."""
        return None if self.ram_budget_kb is None else int(self.ram_budget_kb * 1024)


@dataclass
class BuildResult:
    out_dir: Path
    report: dict
    tflite_path: Path
    stages: list = field(default_factory=list)


class Stages:
    """Times each stage for the report and shows it on the console."""

    def __init__(self, console=None):
        self.console = console
        self.records: list[dict] = []

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        if self.console:
            self.console.log(f"[bold]{name}[/bold] …")
        yield
        self.records.append({"name": name, "seconds": round(time.perf_counter() - start, 2)})


def preflight(cfg: BuildConfig) -> Board:
    """The checks that need no TensorFlow, before any work: the board, the zoo card and the
    output folder (contract 6), options that exclude each other. Returns the board."""
    if cfg.keras_model and cfg.model:
        raise EdgeqError("pass either --model or --keras-model, not both")
    if cfg.train and cfg.zero_shot:
        raise EdgeqError("--train and --zero-shot exclude each other: QGT trains on labelled data",
                         "drop one of them")
    if cfg.method == "rex" and cfg.bits == "mixed":
        raise EdgeqError("--method rex takes one width (--bits 8, 4, 3 or 2), not mixed",
                         "pick a width; REx's orders are its own accuracy ladder")
    board = load_board(cfg.board)
    if cfg.model:
        load_card(cfg.model)
    for option, value in (("--firmware-eval-limit", cfg.firmware_eval_limit),
                          ("--test-inputs", cfg.test_inputs)):
        if value < 0:
            raise DataError(f"{option} {value}: must be 0 or more", f"pass {option} 0 to skip")
    if cfg.eval_limit is not None and cfg.eval_limit <= 0:
        raise DataError(f"--eval-limit {cfg.eval_limit}: must be a positive number of samples",
                        "pass --eval-limit N with N >= 1 (default 2000)")
    if cfg.model and not cfg.keras_model and not cfg.weights and not cfg.epochs:
        raise EdgeqError(f"--model {cfg.model} without --weights: an untrained model classifies "
                         "at chance", f"pass --weights FILE (e.g. from `edgeq train --model "
                         f"{cfg.model}`), or --epochs N to train it on --data first")
    check_output_folder(cfg.out, cfg.force, _inputs(cfg))
    return board


def _inputs(cfg: BuildConfig) -> list:
    return [cfg.keras_model, cfg.weights, cfg.data]


def _resolve_model(cfg: BuildConfig):
    """(keras model, card or None, name). The demo (no model given) builds `fmnist`."""
    from edgeq.learn.modelio import load_keras_model, load_weights
    from edgeq.learn.zoo import build_model

    if cfg.keras_model:
        loaded = load_keras_model(cfg.keras_model, unsafe=cfg.unsafe)
        card = load_card(cfg.model) if cfg.model else None
        if cfg.weights:
            load_weights(loaded.model, cfg.weights)
        return loaded.model, card, Path(cfg.keras_model).stem
    card = load_card(cfg.model or DEMO_MODEL)
    model = build_model(card)
    if cfg.weights:
        load_weights(model, cfg.weights, card.name)
    return model, card, card.name


def _input_spec(model, card: ModelCard | None):
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    if card is not None:
        if tuple(card.input_shape) != shape:
            raise DataError(f"model input {shape} does not match the {card.name} card's {card.input_shape}")
        return shape, card.preprocess.color, card.preprocess.scale, card.labels
    color = "grayscale" if shape[-1] == 1 else "rgb"
    return shape, color, 255.0, None


def load_build_data(cfg: BuildConfig, card: ModelCard | None, shape, color, scale, labels):
    """(train, calibration, evaluation) datasets. Image folders with COCO-style names are split
    by their prefix (train2017_* to calibrate, val2017_* to evaluate); otherwise a seeded split."""
    if cfg.data is None:
        if card is None or card.name != DEMO_MODEL:
            name = card.name if card else "this model"
            raise DataError(f"{name} needs data: no --data given",
                            "pass --data with an image folder (one sub-folder per class), an .npz or IDX files")
        train, test = fashion_mnist(shape)
    else:
        ds = load_dataset(cfg.data, shape, color, scale, labels)
        if ds.names and any(n.startswith("train2017_") for n in ds.names) \
                and any(n.startswith("val2017_") for n in ds.names):
            train, test = ds.by_prefix("train2017_"), ds.by_prefix("val2017_")
        elif _is_fashion_folder(cfg.data):
            train = ds
            test = load_dataset(cfg.data, shape, color, scale, labels, split="test")
        else:
            train, test = ds.split(0.5, cfg.seed)
    if len(train) < MIN_CALIBRATION:
        raise DataError(f"{cfg.data}: only {len(train)} calibration samples",
                        f"give at least {MIN_CALIBRATION} (64 or more recommended)")
    order = np.random.default_rng(cfg.seed).permutation(len(train))[:cfg.calib_samples]
    calib = train.subset(np.sort(order))
    if card is not None and cfg.data is not None:
        domain = (0.0, 255.0 / card.preprocess.scale)  # the card's preprocessing: pixels / scale
        check_input_domain(train.x, *domain, str(cfg.data),
                           f"the {card.name} card expects inputs in [{domain[0]:g}, {domain[1]:g}]: "
                           f"save the arrays divided by {card.preprocess.scale:g}")
    return train, calib, test.stratified(cfg.eval_limit, cfg.seed, "--eval-limit")


def chance_level(y, classes: int) -> dict | None:
    """What guessing reaches on labels `y`: the most common class's share, and the accuracy a
    float model must beat to be more than that (two standard errors above it). None when the
    labels hold fewer than two classes (always guessing one is then perfect)."""
    y = np.asarray(y)
    known = y[y >= 0]
    if len(np.unique(known)) < 2:
        return None
    majority = float(np.bincount(known, minlength=classes).max() / max(1, len(known)))
    spread = 2 * np.sqrt(majority * (1 - majority) / max(1, len(known)))
    return {"majority": majority, "threshold": float(min(majority + spread, 1.0 - 1e-9))}


def _is_fashion_folder(path) -> bool:
    p = Path(path)
    return p.is_dir() and any(f.name.startswith("t10k-images") for f in p.iterdir())


def run_build(cfg: BuildConfig, console=None, progress_factory=None) -> BuildResult:
    from edgeq.deploy.carray import write_c_arrays
    from edgeq.deploy.check import check_model
    from edgeq.deploy.tflm import measure_arena
    from edgeq.learn.export import to_tflite_model
    from edgeq.learn.graph import capture
    from edgeq.learn.quant.sim import simulate
    from edgeq.learn.tf_baseline import tflite_int8_ptq
    from edgeq.learn.train import evaluate_float, train
    from edgeq.report import write_report
    from edgeq.tflite.write import write_model

    out = Path(cfg.out)
    board = preflight(cfg)
    st = Stages(console)
    with st.stage("load model"):
        model, card, name = _resolve_model(cfg)
        shape, color, scale, labels = _input_spec(model, card)
        graph = capture(model)  # names any layer the integer pipeline cannot take, before any work
    epochs = cfg.epochs
    if epochs is None and cfg.model is None and not cfg.keras_model and not cfg.weights:
        # the demo (no model given) trains briefly
        epochs = card.train.get("demo_epochs", 3)
    classes = output_classes(int(np.prod(model.outputs[0].shape[1:])))
    train_ds = calib = test = None
    if not (cfg.zero_shot and cfg.data is None and not epochs):  # zero-shot may need no data
        with st.stage("load data"):
            train_ds, calib, test = load_build_data(cfg, card, shape, color, scale, labels)
            for ds in (train_ds, test):
                check_labels(ds.y, classes, str(cfg.data or ds.source))
    trained = None
    if epochs:
        with st.stage(f"train {epochs} epoch(s)"):
            tc = card.train if card else {}
            progress = progress_factory() if progress_factory else None
            with progress or _null():
                trained = train(model, train_ds, test, epochs, tc.get("batch_size", 128),
                                tc.get("learning_rate", 1e-3), cfg.seed, progress)
    if epochs:  # training changed the weights: capture the trained model
        graph = capture(model)
    method = cfg.method
    if cfg.zero_shot:
        calib, test = _zero_shot_data(cfg, model, test, st, progress_factory)
        method = method or "genie"
        # the model's domain, not what the synthetic images happen to cover
        graph = graph.with_input_range(INPUT_DOMAIN)
    with st.stage("float accuracy"):
        float_acc, float_out = evaluate_float(model, test)
    labelled = bool(np.all(test.y >= 0))
    chance = chance_level(test.y, classes) if labelled else None
    if chance is not None and float_acc <= chance["threshold"] and not cfg.force:
        raise EdgeqError(f"the float model is at chance on the evaluation data: "
                         f"{100 * float_acc:.2f}% top-1 on {len(test)} samples of {classes} "
                         f"classes, where always guessing the most common class gives "
                         f"{100 * chance['majority']:.2f}%",
                         "load trained weights (--weights), train longer (--epochs), check that "
                         "the data's labels match the model's classes; --force builds anyway")
    from edgeq.learn.quantize import quantize

    wname = "mixed" if cfg.bits == "mixed" else f"W{cfg.bits}"
    qgt_section = None
    if method == "rex":
        with st.stage(f"REx {wname} × {cfg.expansion} orders (G = {cfg.sparsity:g}), export"):
            qgraph, qreport, tflite, qgt_section = _rex_stage(cfg, graph, calib)
    elif cfg.train:
        with st.stage(f"QGT: train toward {wname} for {cfg.train_epochs} epoch(s), export"):
            qgraph, qreport, tflite, qgt_section = _qgt_stage(cfg, graph, train_ds, calib, test,
                                                              progress_factory)
    else:
        with st.stage(f"quantize {wname}A8 ({method or 'default method'}, edgeq writer)"):
            budget = cfg.budget_kb if cfg.budget_kb is not None else board.flash_kib
            qgraph, qreport = quantize(graph, calib.x, method, cfg.bits,
                                       budget if cfg.bits == "mixed" else None, iters=cfg.iters,
                                       seed=cfg.seed, progress=progress_factory is not None)
            tflite = write_model(to_tflite_model(qgraph))
    with st.stage("measure TFLM arena (the comparison)"):
        tflm_arena = measure_arena(tflite)
    # The firmware is built beside --out and moved into the staged output at the end; the
    # folder goes however the build ends.
    out.absolute().parent.mkdir(parents=True, exist_ok=True)  # as staged_folder would
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.firmware-",
                                     dir=out.absolute().parent) as work:
        firmware = None
        if cfg.firmware:
            with st.stage(f"firmware for {board.name} (edgeq engine)"):
                firmware, link_error = _firmware_stage(cfg, board, tflite, test,
                                                       Path(work) / "firmware")
        fit = _fit(board, tflite, firmware, graph, qreport, tflm_arena, cfg, calib.x)
        if firmware is not None and link_error is not None:  # within the budgets, not the map
            raise BoardFitError(f"the firmware fits {board.name}'s budgets but not its memory map "
                                f"({board.source}): {link_error.message}", link_error.hint)
        fit["tflm_arena_bytes"] = tflm_arena  # the comparison: what TFLM would need
        where = {"classes": test.class_names or None, "data": str(cfg.data or test.source),
                 "chosen": test.chosen}
        with st.stage("on-device checks (LiteRT, TFLM, edgeq reference)"), \
                _bar(progress_factory, "LiteRT + TFLM + reference", 3 * len(test)) as advance:
            checked = check_model(tflite, test.x, test.y if labelled else None,
                                  float_model_predict=float_out, advance=advance, **where)
        with st.stage("simulated quantized model (Keras side)"):
            sim_labels = class_labels(simulate(qgraph, test.x))
            tflm_labels = checked.runtime("tflm").labels
        accuracy_rows = checked.accuracy_rows(include_float=True)
        for row in accuracy_rows:  # what each model weighs: the accuracy-versus-size plot
            row["bytes"] = 4 * int(model.count_params()) if row["name"] == "float" else len(tflite)
        sim_scores = classification(test.y, sim_labels, classes) if labelled else {}
        accuracy_rows.insert(1, {"name": f"edgeq simulated {wname}A8 (Keras side)",
                                 "accuracy": sim_scores.get("accuracy"),
                                 "agreement": float((sim_labels == tflm_labels).mean()),
                                 "agreement_with": "TFLM", "samples": len(test), "bytes": len(tflite),
                                 "per_class_accuracy": sim_scores.get("per_class_accuracy"),
                                 "confusion": sim_scores.get("confusion")})
        if cfg.baseline:
            with st.stage("baseline: TensorFlow converter INT8 PTQ"):
                tf_ptq = tflite_int8_ptq(model, calib.x)
                base = check_model(tf_ptq, test.x, test.y if labelled else None,
                                   float_model_predict=float_out, **where)
            lite = base.runtime("litert")
            accuracy_rows.append({"name": f"baseline: TensorFlow INT8 PTQ via LiteRT ({len(tf_ptq):,} bytes)",
                                  "accuracy": lite.accuracy, "agreement": lite.float_agreement,
                                  "agreement_with": "float", "samples": len(test),
                                  "bytes": len(tf_ptq), "per_class_accuracy": lite.per_class_accuracy,
                                  "confusion": lite.confusion})
        emulated = None
        if firmware is not None and firmware.elf is not None and cfg.firmware_eval_limit:
            emulated = _emulated_stage(cfg, board, tflite, test, checked, classes, st)
            if isinstance(emulated, dict):
                accuracy_rows.insert(2, emulated.pop("row"))

        report = {
            "edgeq_version": __version__,
            "model": {"name": name, "card": card.to_dict() if card else None, "input_shape": list(shape),
                      "params": int(model.count_params()), "tflite_bytes": len(tflite),
                      "quantization": f"{wname}A8 full-integer, {qreport.method}, written by edgeq",
                      "bits": qreport.plan,
                      "trained_epochs": epochs or 0,
                      "train_seconds": round(trained.seconds, 1) if trained else 0.0},
            "board": board.to_dict(),
            "fit": fit,
            "firmware": _firmware_section(cfg, board, firmware, emulated, tflite),
            "data": {"source": cfg.data or ("none" if cfg.zero_shot else "Fashion-MNIST (IDX)"),
                     "calibration": "Genie-D synthetic images (zero-shot)" if cfg.zero_shot
                     else "real", "calibration_samples": len(calib),
                     "evaluation": "real, labelled" if labelled
                     else "the synthetic images (no labels: agreement with float only)",
                     "evaluation_samples": len(test),
                     "evaluation_chosen": test.chosen or "all samples",
                     "classes": test.class_names or [str(c) for c in range(classes)],
                     "chance": chance,
                     "skipped_unreadable": (train_ds or test).skipped},
            "accuracy": accuracy_rows,
            "check": checked.to_dict(),
            "quantize": qreport.to_dict(),
            "stages": st.records,
            "config": asdict(cfg),
        }
        if qgt_section is not None:
            report["rex" if method == "rex" else "qgt"] = qgt_section
        stem = "model"
        int2fc = None
        if cfg.int2_fc:
            with st.stage("INT2 FULLY_CONNECTED file for LiteRT (checked by LiteRT)"):
                int2fc, report["int2_fc"] = _int2fc_stage(tflite, test, f"{stem}.tflite",
                                                          checked.runtime("litert"))
        with staged_folder(out, cfg.force, _inputs(cfg)) as tmp:
            (tmp / f"{stem}.tflite").write_bytes(tflite)
            if int2fc is not None:
                (tmp / report["int2_fc"]["file"]).write_bytes(int2fc)
            if firmware is not None:
                shutil.move(str(firmware.out_dir), tmp / "firmware")
            write_c_arrays(tflite, tmp, name="model_data", source=f"{stem}.tflite")
            if cfg.zero_shot:
                from edgeq.learn.synth import preview_png, save_npz

                save_npz(calib.x, tmp / "synthetic.npz")
                preview_png(calib.x, tmp / "synthetic.png")
                report["zero_shot"] = {"calibration": "Genie-D images from the model's BatchNorm "
                                                      "statistics", "samples": len(calib),
                                       "images": "synthetic.npz", "preview": "synthetic.png",
                                       "method": qreport.method}
            if trained is not None:  # keep the trained float model so it can be rebuilt without training
                with warnings.catch_warnings():  # tf_keras calls .h5 "legacy"; it is what tfmot reads
                    warnings.simplefilter("ignore")
                    model.save(tmp / "model_float.h5")
            write_report(report, tmp)
        return BuildResult(out, report, out / f"{stem}.tflite", st.records)


def _int2fc_stage(tflite: bytes, test, standard_name: str,
                  litert=None) -> tuple[bytes | None, dict]:
    """(the INT2 FULLY_CONNECTED twin or None, its report section): LiteRT-only, the firmware
    and TFLM keep the standard file (edgeq.deploy.int2fc). `litert`: the check's LiteRT run
    of the standard file on the same inputs, whose outputs the twin must give."""
    from edgeq.deploy.int2fc import SUFFIX, int2fc_file

    made = int2fc_file(tflite, test.x, litert.outputs if litert is not None else None)
    section = {"file": None, "bytes": None, "standard_file": standard_name,
               "standard_bytes": len(tflite), "int2_tensors": [], "litert_identical_on": 0,
               "runs_on": "LiteRT only (TFLM refuses INT2 tensors); the firmware and TFLM "
                          f"use {standard_name}"}
    if made is None:
        section["note"] = "the plan gives no FULLY_CONNECTED layer 2 bits: no file written"
        return None, section
    twin, names = made
    section.update(file=standard_name.replace(".tflite", f"{SUFFIX}.tflite"), bytes=len(twin),
                   int2_tensors=names, litert_identical_on=len(test.x))
    return twin, section


TOOLCHAIN_WARNING = ("arm-none-eabi-gcc is not installed: the firmware sources are written "
                     "but not built, and flash and RAM come from the memory plan; install it "
                     "with: sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi")


def _firmware_stage(cfg: BuildConfig, board: Board, tflite: bytes, test, dest: Path):
    """The board project in `dest` (edgeq.deploy.firmware), with `cfg.test_inputs` evaluation
    inputs (seeded, stratified) embedded beside TFLM's outputs for them, built when
    arm-none-eabi-gcc is installed. A firmware too big for the board's memory map is built
    again on an enlarged map (edgeq.fit.measuring_board), so that the fit check can say by
    how much from the ELF's own numbers. Returns (FirmwareResult, the linker's error or None)."""
    from edgeq.deploy.check import model_input_spec, quantize_inputs
    from edgeq.deploy.firmware import build_firmware
    from edgeq.fit import measuring_board
    from edgeq.tflite.read import read_model

    model = read_model(tflite)
    model.description = "model.tflite"
    vectors = None
    if cfg.test_inputs:
        index = stratified_subset(test.y, min(cfg.test_inputs, len(test)), cfg.seed)
        vectors = quantize_inputs(test.x[index], model_input_spec(tflite))
    built = shutil.which("arm-none-eabi-gcc") is not None
    if not built:
        warnings.warn(TOOLCHAIN_WARNING, stacklevel=2)
    budget = cfg.arena_budget
    try:
        return build_firmware(model, board, dest, vectors, compile=built, fit_check=False,
                              arena_budget=budget), None
    except ToolchainError as e:
        if "overflow" not in str(e) and "will not fit" not in str(e):
            raise
        link_error = e
    measured = build_firmware(model, measuring_board(board), dest.parent / "measured", vectors,
                              fit_check=False, arena_budget=budget or board.arena_bytes)
    return measured, link_error


def _fit(board: Board, tflite: bytes, firmware, graph, qreport, tflm_arena: int,
         cfg: BuildConfig, calib_x) -> dict:
    """Flash and RAM of the firmware (the ELF, else the memory plan) against the board; over
    budget, a BoardFitError with what would fit (edgeq.fit.weights_hint)."""
    from edgeq.deploy.cgen import lower_model
    from edgeq.deploy.firmware import STACK_BYTES
    from edgeq.fit import (
        fit_board,
        sizes_from_elf,
        sizes_from_plan,
        sizes_from_tflm,
        symbol_bytes,
        weights_hint,
    )
    from edgeq.tflite.read import read_model

    budget = cfg.arena_budget
    if firmware is not None and firmware.elf is not None and firmware.elf.is_file():
        sizes = sizes_from_elf(firmware.sizes, STACK_BYTES,
                               symbol_bytes(firmware.elf, "edgeq_test_"))
    else:
        try:
            engine = lower_model(read_model(tflite), arena_budget=budget or board.arena_bytes)
            sizes = sizes_from_plan(engine.plan.arena_size, engine.weight_bytes, STACK_BYTES,
                                    engine.channel_scratch_bytes)
        except UnsupportedOpError:  # --no-firmware on a model only TFLM runs
            sizes = sizes_from_tflm(len(tflite), tflm_arena, STACK_BYTES)
    nodes = graph.weighted_nodes
    kernels = {n.name: int(n.weights["kernel"].size) for n in nodes}
    edges = (nodes[0].name, nodes[-1].name) if nodes else ()
    plan = {k: int(b) for k, b in (qreport.plan or {}).items() if k in kernels}
    def solve(stored_bytes: int) -> dict[str, int]:  # only when the flash is over
        from edgeq.learn.quant.mixed import plan_mixed

        return plan_mixed(graph, calib_x, stored_bytes, widths=(8, 4)).plan

    def layer_bytes(name: str, bits: int) -> int:  # what the board stores, as the planner counts
        from edgeq.learn.quant import mixed

        if not fields:  # measured once, only when a hint is computed
            allowed = {n: (8,) if n in edges else (8, 4) for n in kernels}
            fields.update(mixed.param_fields(graph, calib_x, allowed))
        return mixed.layer_bytes(graph.node(name), bits, fields)

    fields: dict = {}
    hint = (weights_hint(sizes["flash_bytes"], kernels, plan, edges, solve, layer_bytes)
            if plan else None)
    fit = fit_board(board, sizes, hint)
    if budget is not None and fit["arena_bytes"] > budget:
        raise BoardFitError(f"the tensor arena needs {fit['arena_bytes']:,} bytes, "
                            f"{fit['arena_bytes'] - budget:,} more than --ram-budget-kb "
                            f"{cfg.ram_budget_kb:g} ({budget:,} bytes), even with the first layers "
                            "streamed", "raise the budget, or use a smaller input resolution")
    fit["arena_budget_asked"] = budget
    return fit


def _emulated_stage(cfg: BuildConfig, board: Board, tflite: bytes, test, checked, classes: int,
                    st: Stages):
    """The board's firmware under QEMU on `cfg.firmware_eval_limit` evaluation inputs (seeded,
    stratified), against TFLM's outputs for them: the accuracy row and the report section,
    or why it could not run (a string)."""
    from edgeq.deploy.check import quantize_inputs
    from edgeq.deploy.ondevice import emulator_for, run_emulated
    from edgeq.tflite.read import read_model

    emulator, why = emulator_for(board)
    tflm = checked.runtime("tflm")
    if emulator is None or tflm is None or not tflm.available:
        return why or f"TFLM did not run ({tflm.reason if tflm else 'missing'})"
    index = stratified_subset(test.y, min(cfg.firmware_eval_limit, len(test)), cfg.seed)
    chosen = (f"{len(index)} of the {len(test)} evaluation samples, stratified by class, "
              f"seed {cfg.seed}" if len(index) < len(test) else "all evaluation samples")
    machine = emulator.emulate["machine"]
    with st.stage(f"on-device accuracy: the firmware under QEMU {machine} on {len(index)} "
                  "inputs"):
        labels = test.y[index] if bool(np.all(test.y >= 0)) else None
        run = run_emulated(read_model(tflite), board, emulator,
                           quantize_inputs(test.x[index], checked.input), tflm.outputs[index],
                           labels, classes, checked.output, chosen,
                           arena_budget=cfg.arena_budget)
    section = run.to_dict()
    section["row"] = {"name": f"edgeq firmware on QEMU {machine} ({board.core}, built with "
                              f"{board.name}'s flags)", "accuracy": run.accuracy,
                      "agreement": run.label_agreement, "agreement_with": "TFLM",
                      "samples": run.samples, "bytes": len(tflite),
                      "per_class_accuracy": run.per_class_accuracy, "confusion": run.confusion}
    return section


def _firmware_section(cfg: BuildConfig, board: Board, firmware, emulated,
                      tflite: bytes) -> dict:
    """report["firmware"]: what was built for the board and how it ran under QEMU."""
    if firmware is None:
        return {"built": False, "reason": "--no-firmware"}
    built = firmware.elf is not None and firmware.elf.is_file()
    section = {"built": built, "folder": "firmware/", "board": board.name,
               "elf": "firmware/fw.elf" if built else None,
               "reason": "" if built else TOOLCHAIN_WARNING,
               "test_inputs": firmware.test_count, "macs": firmware.engine.macs}
    stage = firmware.engine.stage
    if stage is not None:  # what streaming saved: the memory timeline, before and after
        from edgeq.deploy.cgen import lower_model
        from edgeq.deploy.plan import live_bytes
        from edgeq.tflite.read import read_model

        model = read_model(tflite)
        plain, ops = lower_model(model).plan, len(model.ops)
        section["streamed"] = {
            "ops": [stage.ops[0], stage.ops[-1]], "band_rows": stage.band,
            "arena_bytes": firmware.engine.arena_size, "layer_by_layer_bytes": plain.arena_size,
            "timeline": {"layer by layer": live_bytes(plain, ops),
                         "streamed": live_bytes(firmware.engine.plan, ops)}}
    if isinstance(emulated, dict):
        section["emulated"] = emulated
    elif emulated is not None:
        section["emulated"] = {"ran": False, "reason": emulated}
    elif not cfg.firmware_eval_limit:
        section["emulated"] = {"ran": False, "reason": "--firmware-eval-limit 0"}
    elif not built:
        section["emulated"] = {"ran": False, "reason": "no ELF to run (no arm-none-eabi-gcc)"}
    return section


def _rex_stage(cfg: BuildConfig, graph, calib):
    """--method rex: residual expansion (weights data-free; activation ranges from the
    calibration images, synthetic with --zero-shot). Returns (qgraph, QuantizeReport, tflite
    bytes, report section)."""
    from edgeq.learn.quant.rex import export_rex, rex_quantize
    from edgeq.learn.quantize import QuantizeReport

    t0 = time.perf_counter()
    qgraph, info = rex_quantize(graph, int(cfg.bits), cfg.expansion, cfg.sparsity,
                                calib_x=calib.x)
    tflite = export_rex(qgraph)
    report = QuantizeReport("rex", cfg.bits, dict(qgraph.plan), len(calib),
                            seconds=round(time.perf_counter() - t0, 1))
    return qgraph, report, tflite, info.to_dict()


def _qgt_stage(cfg: BuildConfig, graph, train_ds, calib, test, progress_factory):
    """--train: QGT toward cfg.bits (mixed: the integer program's plan under --budget-kb, which
    counts what the board stores as for quantize; without a budget, 2 bits with the
    bottlenecks lifted), exported by edgeq's writer. Returns (qgraph, QuantizeReport, tflite
    bytes, report section)."""
    from edgeq.learn.qgt.bottlenecks import find_bottlenecks, mixed_plan
    from edgeq.learn.qgt.training import finish, recipe, train_qgt
    from edgeq.learn.quant.mixed import plan_mixed
    from edgeq.learn.quantize import QuantizeReport

    t0 = time.perf_counter()
    if cfg.bits != "mixed":
        bits = int(cfg.bits)
    elif cfg.budget_kb is not None:
        bits = plan_mixed(graph, calib.x, cfg.budget_kb * 1024).plan
    else:
        bits = mixed_plan(graph, calib)
    settings = recipe(bits)
    with (progress_factory() if progress_factory else _null()) as progress:
        result = train_qgt(graph, train_ds, test, bits, cfg.train_epochs, seed=cfg.seed,
                           batch_size=min(128, len(train_ds)), progress=progress, **settings)
    tflite, qgraph = finish(result, calib.x)
    ranking = find_bottlenecks(result, test, bits=result.plan)
    report = QuantizeReport("qgt", cfg.bits, dict(result.plan), len(calib),
                            seconds=round(time.perf_counter() - t0, 1))
    report.count_bytes(graph, qgraph)
    section = {"epochs": cfg.train_epochs, "train_samples": len(train_ds),
               "learning_rate": settings["learning_rate"],
               "straight_through": settings["ste_start"] is not None,
               "grid_distance_lsb": round(result.grid_distance(), 4),
               "history": [{k: v for k, v in row.items() if k != "layer_distance_lsb"}
                           for row in result.history],
               "bottlenecks": [{k: r[k] for k in ("rank", "name", "bits", "loss_increase",
                                                  "sqnr_db", "bottleneck", "suggested_bits")}
                               for r in ranking]}
    return qgraph, report, tflite, section


def _zero_shot_data(cfg: BuildConfig, model, test, st: Stages, progress_factory):
    """(calibration, evaluation) for --zero-shot: cfg.calib_samples Genie-D images from the
    model's BatchNorm statistics; without real data they are also what the checks run on
    (labels unknown, -1: agreement with the float model only)."""
    from edgeq.data import Dataset
    from edgeq.learn.synth import synthesize

    n = cfg.calib_samples
    with st.stage(f"synthesize {n} calibration images (Genie-D, zero-shot)"), \
            _bar(progress_factory, "Genie-D synthesis", 1) as advance:
        def tick(done, total):
            if advance is not None and done == total:
                advance()

        iterations = {"iterations": cfg.synth_iterations} if cfg.synth_iterations else {}
        x = synthesize(model, n=n, batch_size=min(n, 128), seed=cfg.seed, progress=tick,
                       **iterations)
    calib = Dataset(x, np.full(len(x), -1, np.int64), [], "Genie-D (zero-shot)")
    if test is None:
        test = calib.take(cfg.eval_limit)
    return calib, test


@contextmanager
def _null():
    yield None


@contextmanager
def _bar(progress_factory, description: str, total: int):
    """A rich progress bar when the caller gave a factory; yields the advance callable."""
    if progress_factory is None:
        yield None
        return
    with progress_factory() as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)
