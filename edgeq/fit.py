"""Does a build fit its board? Flash and RAM of the firmware as linked (contract 3 of DESIGN.md):
flash = text + data and RAM = data + bss + the stack the firmware template reserves, read from
the ELF with arm-none-eabi-size, against the board card's budgets. Without the Arm toolchain the
same numbers come from the memory plan (the arena and the weights, plus an estimate of the
engine's code), and the report says so. Test vectors embedded for the board to check itself are
counted apart: they are not part of what the model needs.

Over budget, the error says by how much and what would fit, with numbers computed from the
model's own layers: the flash that 4-bit weights would take, or the weight budget a mixed
plan must meet (`--bits mixed --budget-kb N`).
"""

from __future__ import annotations

from dataclasses import replace

from edgeq.boards import Board
from edgeq.errors import BoardFitError

ENGINE_CODE_ESTIMATE = 40 * 1024  # engine code, startup and libc without the toolchain to measure


def sizes_from_elf(sizes: dict, stack_bytes: int, vector_bytes: int = 0) -> dict:
    """Fit numbers from edgeq.deploy.firmware's arm-none-eabi-size figures."""
    return {"source": "linked ELF (arm-none-eabi-size)",
            "flash_bytes": sizes["text"] + sizes["data"] - vector_bytes,
            "ram_bytes": sizes["data"] + sizes["bss"] + stack_bytes,
            "arena_bytes": sizes["arena"], "stack_bytes": stack_bytes,
            "text": sizes["text"], "data": sizes["data"], "bss": sizes["bss"],
            "test_vector_bytes": vector_bytes}


def sizes_from_plan(arena_bytes: int, weight_bytes: int, stack_bytes: int,
                    channel_scratch: int = 0) -> dict:
    """Fit numbers from the memory plan when the firmware could not be linked (RAM: the arena,
    the engine's per-channel parameter scratch and the stack)."""
    return {"source": "memory plan (no arm-none-eabi-gcc: the engine's code is an estimate)",
            "flash_bytes": weight_bytes + ENGINE_CODE_ESTIMATE,
            "ram_bytes": arena_bytes + channel_scratch + stack_bytes, "arena_bytes": arena_bytes,
            "stack_bytes": stack_bytes, "test_vector_bytes": 0}


def sizes_from_tflm(model_bytes: int, tflm_arena: int, stack_bytes: int) -> dict:
    """Fit numbers for a model edgeq's engine cannot run (--no-firmware): the .tflite in flash
    (TFLM's own code not counted) and TFLM's arena."""
    return {"source": "the .tflite and TFLM's arena (--no-firmware; TFLM's code not counted)",
            "flash_bytes": model_bytes, "ram_bytes": tflm_arena + stack_bytes,
            "arena_bytes": tflm_arena, "stack_bytes": stack_bytes, "test_vector_bytes": 0}


def measuring_board(board: Board, kib: int = 64 * 1024) -> Board:
    """`board` with every memory region and budget enlarged (up to `kib`, never into the next
    region), so that a firmware too big for the board still links and can be measured."""
    regions = sorted(board.memory.items(), key=lambda item: int(str(item[1]["origin"]), 0))
    memory = {}
    for i, (name, region) in enumerate(regions):
        start = int(str(region["origin"]), 0)
        room = kib
        if i + 1 < len(regions):
            room = min(room, (int(str(regions[i + 1][1]["origin"]), 0) - start) // 1024)
        memory[name] = {**region, "kib": max(int(region["kib"]), room)}
    big = max(kib, board.flash_kib, board.ram_kib)
    return replace(board, memory=memory, flash_kib=big, ram_kib=big, arena_kib=big)


def fit_board(board: Board, sizes: dict, weights_hint=None) -> dict:
    """The fit section of the report; BoardFitError naming every budget that is exceeded, by
    how much, and `weights_hint(flash_over)` (what would fit) when flash is over."""
    fit = {**sizes, "flash_budget": board.flash_bytes, "ram_budget": board.ram_kib * 1024,
           "arena_budget": board.arena_bytes}
    problems, hints = [], []
    flash_over = fit["flash_bytes"] - fit["flash_budget"]
    if flash_over > 0:
        problems.append(f"flash: {fit['flash_bytes']:,} bytes, {flash_over:,} more than the "
                        f"{fit['flash_budget']:,} of {board.name}")
        hints.append(weights_hint(flash_over) if weights_hint else
                     "use a board with more flash (`edgeq boards`) or a smaller model")
    ram_over = fit["ram_bytes"] - fit["ram_budget"]
    arena_over = fit["arena_bytes"] - fit["arena_budget"]
    if ram_over > 0:
        problems.append(f"RAM: {fit['ram_bytes']:,} bytes (data + bss + "
                        f"{fit['stack_bytes']:,} of stack), {ram_over:,} more than the "
                        f"{fit['ram_budget']:,} of {board.name}")
    if arena_over > 0:
        problems.append(f"tensor arena: {fit['arena_bytes']:,} bytes, {arena_over:,} more than "
                        f"the {fit['arena_budget']:,} {board.name} has for it")
    if ram_over > 0 or arena_over > 0:
        hints.append("activations stay 8-bit, so fewer weight bits do not shrink RAM: use a "
                     "board with more RAM (`edgeq boards`), a smaller input resolution or fewer "
                     "channels")
    if problems:
        raise BoardFitError(f"the firmware does not fit {board.name} ({sizes['source']}): "
                            + "; ".join(problems), "; ".join(hints))
    return fit


def stored_bytes(layer_bytes, names, plan: dict[str, int]) -> int:
    """Bytes the board stores for these layers at `plan`'s widths (8 if absent), by
    `layer_bytes(name, bits)`."""
    return sum(layer_bytes(name, plan.get(name, 8)) for name in names)


def engine_weight_bytes(kernel_sizes: dict[str, int]):
    """layer_bytes for weight counts alone: each layer's weights packed at its width
    (edgeq.intmath.stored_weight_bytes), no per-channel parameters."""
    from edgeq.intmath import stored_weight_bytes

    return lambda name, bits: stored_weight_bytes(kernel_sizes[name], bits)


def weights_hint(flash_bytes: int, kernel_sizes: dict[str, int], plan: dict[str, int],
                 edges: tuple[str, ...], solve=None, layer_bytes=None) -> callable:
    """What makes the model fit: computed from the bytes the board stores per layer and width
    (`layer_bytes(name, bits)`: edgeq.learn.quant.mixed.layer_bytes, weights as the engine
    packs them + per-channel parameters, what the mixed planner's budgets count; default: the
    `kernel_sizes` weights packed, engine_weight_bytes) and the current `plan` (name -> bits);
    `edges` keep 8 bits. `solve` (stored bytes -> {name: bits}), when given, computes the
    mixed 8/4-bit plan under them."""
    layer_bytes = layer_bytes or engine_weight_bytes(kernel_sizes)

    def hint(flash_over: int) -> str:  # computed only when the flash is over
        now = stored_bytes(layer_bytes, kernel_sizes, plan)
        four = {name: 8 if name in edges else 4 for name in kernel_sizes}
        smallest = stored_bytes(layer_bytes, kernel_sizes, four)
        need = now - flash_over  # stored bytes that would fit
        if smallest > need:
            return (f"even 4-bit inner layers store {smallest:,} bytes of weights and "
                    f"parameters, {smallest - need:,} more than fit: use a board with more flash "
                    "(`edgeq boards`) or a smaller model (fewer channels)")
        text = (f"4-bit inner layers (`--bits 4`) store {smallest:,} bytes of weights and "
                f"parameters instead of {now:,}: flash about {flash_bytes - now + smallest:,} "
                "bytes")
        if not any(b > 4 for n, b in plan.items() if n not in edges):
            return text
        if solve is not None:
            mixed = solve(need)
            fours = [n for n, b in mixed.items() if b <= 4]
            names = ", ".join(fours[:6]) + (", …" if len(fours) > 6 else "")
            text += (f"; or a mixed plan, computed by the integer program on the calibration "
                     f"data for at most {need:,} bytes stored: {len(fours)} of "
                     f"{len(mixed)} layers at 4 bits ({names}), the rest at 8, "
                     f"{stored_bytes(layer_bytes, kernel_sizes, mixed):,} bytes")
        return text + (f" (`--bits mixed --budget-kb {need // 1024}` plans that budget of stored "
                       "model among 8, 4, 3 and 2 bits)")

    return hint


def symbol_bytes(elf, prefix: str) -> int:
    """Bytes of the ELF's symbols whose names start with `prefix` (arm-none-eabi-nm)."""
    import shutil
    import subprocess

    nm = shutil.which("arm-none-eabi-nm")
    if nm is None:
        return 0
    listing = subprocess.run([nm, "--print-size", str(elf)], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    total = 0
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3].startswith(prefix):
            total += int(parts[1], 16)
    return total
