import numpy as np
import pytest

from edgeq.boards import aliases, board_names, load_board
from edgeq.errors import UnknownBoardError, UnknownModelError
from edgeq.learn.zoo import build_model, load_card, model_names


def test_required_boards_with_their_budgets():
    assert {"stm32h743", "stm32f746", "imxrt1062", "nrf52840", "mps2-an500"} <= set(board_names())
    h7 = load_board("stm32h743")
    assert (h7.core, h7.clock_mhz, h7.flash_kib, h7.ram_kib, h7.arena_kib) == ("cortex-m7", 480, 2048, 1024, 512)
    f7 = load_board("stm32f746")
    assert (f7.clock_mhz, f7.flash_kib, f7.ram_kib) == (216, 1024, 320)
    nrf = load_board("nrf52840")
    assert (nrf.core, nrf.clock_mhz, nrf.flash_kib, nrf.ram_kib) == ("cortex-m4", 64, 1024, 256)
    assert load_board("imxrt1062").clock_mhz == 600
    assert load_board("mps2-an500").emulate["machine"] == "mps2-an500"
    for b in board_names():
        board = load_board(b)
        assert board.arena_kib <= board.ram_kib and board.memory["flash"]["kib"] <= board.flash_kib


def test_cortex_m7_alias_resolves_to_the_documented_default():
    assert aliases()["cortex-m7"] == "stm32h743"
    assert load_board("cortex-m7").name == "stm32h743"
    assert load_board("CORTEX-M7").name == "stm32h743"


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(UnknownBoardError) as e:
        load_board("esp32")
    assert "esp32" in e.value.message and "stm32h743" in e.value.hint and "cortex-m7" in e.value.hint


def test_board_file_of_ones_own_is_validated(tmp_path):
    good = tmp_path / "mine.yaml"
    text = ("schema: 1\nname: mine\ndescription: d\ncore: cortex-m4\nclock_mhz: 100\nfpu: null\n"
            "dsp: false\nflash_kib: 256\nram_kib: 64\narena_kib: 32\n"
            "memory: {flash: {origin: '0x0', kib: 256}, ram: {origin: '0x20000000', kib: 64}}\n")
    good.write_text(text)
    assert load_board(str(good)).flash_bytes == 256 * 1024
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("arena_kib: 32", "arena_kib: 128"))
    with pytest.raises(UnknownBoardError, match="exceeds ram_kib"):
        load_board(str(bad))
    (tmp_path / "core.yaml").write_text(text.replace("cortex-m4", "cortex-a53"))
    with pytest.raises(UnknownBoardError, match="unknown core"):
        load_board(str(tmp_path / "core.yaml"))
    # the firmware templates link into flash and ram: both named, each with origin and size
    for broken, words in ((", ram: {origin: '0x20000000', kib: 64}", "flash and a ram region"),
                          ("origin: '0x20000000'", "needs an origin"),
                          ("kib: 64}}", "kib must be a positive whole number")):
        replacement = {"origin: '0x20000000'": "origin: 'zz'", "kib: 64}}": "kib: -4}}"}
        (tmp_path / "mem.yaml").write_text(text.replace(broken, replacement.get(broken, "")))
        with pytest.raises(UnknownBoardError, match=words):
            load_board(str(tmp_path / "mem.yaml"))


def test_model_cards_and_builders():
    assert {"person_detect", "person_detect_rgb", "person_detect_tiny", "fmnist"} <= set(model_names())
    for name, shape, classes in [("person_detect", (96, 96, 1), 2), ("person_detect_rgb", (96, 96, 3), 2),
                                 ("fmnist", (32, 32, 1), 10)]:
        card = load_card(name)
        assert card.input_shape == shape and card.num_classes == classes
        model = build_model(card)
        assert tuple(model.input_shape[1:]) == shape and model.output_shape[-1] == classes


def test_person_detect_tiny_fits_64_kib_at_4_bits():
    """The card's claim, measured on the .tflite edgeq's writer makes at 4 bits (first and last
    layer 8-bit): kernels and biases as stored in the file, not a formula."""
    from edgeq.learn.export import quantize_minmax, to_tflite_model
    from edgeq.learn.graph import capture
    from edgeq.tflite.read import read_model
    from edgeq.tflite.write import write_model

    graph = capture(build_model(load_card("person_detect_tiny")))
    calib = np.random.default_rng(0).random((8, 96, 96, 1), np.float32)
    written = read_model(write_model(to_tflite_model(quantize_minmax(graph, calib, bits=4))))
    stored = {}
    for tensor in written.tensors:
        if tensor.is_constant:
            stored[tensor.dtype] = stored.get(tensor.dtype, 0) + tensor.nbytes
    assert stored.get("int4", 0) > 10 * stored.get("int8", 0)  # the inner layers are INT4
    weights = stored.get("int4", 0) + stored.get("int8", 0) + stored.get("int32", 0)
    assert weights <= 64 * 1024, stored


def test_vww_weights_load_into_person_detect_rgb(vww_h5_path):
    import tf_keras

    model = build_model(load_card("person_detect_rgb"))
    model.load_weights(vww_h5_path)
    reference = tf_keras.models.load_model(vww_h5_path, compile=False)
    x = np.random.default_rng(0).random((2, 96, 96, 3), np.float32)
    np.testing.assert_allclose(model(x).numpy(), reference(x).numpy(), atol=1e-6)


def test_unknown_model_lists_the_zoo():
    with pytest.raises(UnknownModelError) as e:
        load_card("resnet50")
    assert "fmnist" in e.value.hint
