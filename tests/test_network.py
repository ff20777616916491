"""Tests for AZNet: shapes, named layers, activation capture, hooks (no leaks), WDL head, config and predict."""

from __future__ import annotations

import chess
import numpy as np
import pytest
import torch

from alphazero_concepts.chess.encoding import N_PLANES, POLICY_SIZE, encode
from alphazero_concepts.nn.network import AZNet, NetConfig, predict

pytestmark = pytest.mark.unit

TINY = NetConfig(blocks=2, channels=8, value_channels=2, value_hidden=8)


def make_net(config: NetConfig = TINY, seed: int = 0) -> AZNet:
    torch.manual_seed(seed)
    net = AZNet(config)
    # non-trivial batch-norm statistics, so eval mode is not the identity
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def sample_planes(n: int = 4, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    boards = [chess.Board()]
    board = chess.Board()
    while len(boards) < n:
        board.push(list(board.legal_moves)[int(rng.integers(board.legal_moves.count()))])
        boards.append(board.copy())
    return torch.from_numpy(encode(boards))


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_output_shapes_and_value_range() -> None:
    net = make_net()
    x = sample_planes(5)
    with torch.no_grad():
        logits, value = net(x)
    assert logits.shape == (5, POLICY_SIZE)
    assert value.shape == (5,)
    assert torch.all(value.abs() <= 1)
    assert torch.isfinite(logits).all()


def test_layer_names_are_stable_and_ordered() -> None:
    net = make_net()
    assert net.layer_names == [
        "stem",
        "block0.conv1", "block0.conv2", "block0",
        "block1.conv1", "block1.conv2", "block1",
        "policy.conv", "policy.logits", "value.conv", "value.fc1", "value.out",
    ]  # fmt: skip


def test_parameter_count_is_pinned() -> None:
    c, vc, vh, b = TINY.channels, TINY.value_channels, TINY.value_hidden, TINY.blocks
    expected = (
        N_PLANES * c * 9 + 2 * c  # stem conv + BN
        + b * 2 * (c * c * 9 + 2 * c)  # two conv + BN per block
        + c * c * 9 + 2 * c + c * 73 + 73  # policy head
        + c * vc + 2 * vc + vc * 64 * vh + vh + vh + 1  # value head
    )  # fmt: skip
    assert sum(p.numel() for p in make_net().parameters()) == expected


def test_run_with_cache_captures_every_layer_with_its_shape() -> None:
    net = make_net()
    x = sample_planes(3)
    with torch.no_grad():
        (logits, value), cache = net.run_with_cache(x)
    assert set(cache) == set(net.layer_names)
    for name in net.layer_names:
        assert cache[name].shape == (3, *net.layer_shape(name)), name
        assert not cache[name].requires_grad
    np.testing.assert_array_equal(cache["policy.logits"].numpy(), logits.numpy())
    np.testing.assert_array_equal(cache["value.out"][:, 0].numpy(), value.numpy())
    assert net.hook_count() == 0


def test_run_with_cache_can_select_layers() -> None:
    net = make_net()
    with torch.no_grad():
        _, cache = net.run_with_cache(sample_planes(2), layers=["block1", "value.fc1"])
    assert set(cache) == {"block1", "value.fc1"}


def test_run_with_cache_outputs_equal_a_plain_forward() -> None:
    net = make_net()
    x = sample_planes(4)
    with torch.no_grad():
        plain_logits, plain_value = net(x)
        (logits, value), _ = net.run_with_cache(x)
    assert torch.equal(logits, plain_logits)
    assert torch.equal(value, plain_value)


def test_no_hook_remains_after_an_error_inside_the_block() -> None:
    net = make_net()
    assert net.hook_count() == 0
    with pytest.raises(RuntimeError, match="boom"), net.hooks([("stem", lambda t: None), ("block1", lambda t: None)]):
        assert net.hook_count() == 2
        raise RuntimeError("boom")
    assert net.hook_count() == 0


def test_an_error_raised_by_a_hook_leaves_no_hook() -> None:
    net = make_net()

    def bad(_t: torch.Tensor) -> None:
        raise ValueError("hook failed")

    with pytest.raises(ValueError, match="hook failed"), net.hooks([("block0.conv2", bad)]):
        net(sample_planes(1))
    assert net.hook_count() == 0


def test_unknown_layer_names_raise_key_error_listing_known_layers() -> None:
    net = make_net()
    with pytest.raises(KeyError, match=r"block9.*known layers: stem, block0\.conv1"), net.hooks([("block9", print)]):
        pass
    # a valid hook registered before the bad name is removed again
    with pytest.raises(KeyError, match="nope"), net.hooks([("stem", print), ("nope", print)]):
        pass
    assert net.hook_count() == 0
    with pytest.raises(KeyError, match="known layers"):
        net.run_with_cache(sample_planes(1), layers=["value.fc2"])
    assert net.hook_count() == 0
    with pytest.raises(KeyError, match="known layers"):
        net.layer_shape("block7")


def test_a_hook_returning_a_tensor_replaces_the_output() -> None:
    net = make_net()
    x = sample_planes(3)
    with torch.no_grad():
        plain_logits, plain_value = net(x)
        with net.hooks([("block0", torch.zeros_like)]):
            zeroed_logits, zeroed_value = net(x)
        with net.hooks([("value.out", lambda t: torch.full_like(t, 0.25))]):
            _, fixed_value = net(x)
        after_logits, after_value = net(x)
    assert not torch.allclose(zeroed_logits, plain_logits)
    assert not torch.allclose(zeroed_value, plain_value)
    assert torch.equal(fixed_value, torch.full((3,), 0.25))
    assert torch.equal(after_logits, plain_logits)  # back to normal once the block exits
    assert torch.equal(after_value, plain_value)
    assert net.hook_count() == 0


def test_a_hook_returning_none_only_reads() -> None:
    net = make_net()
    x = sample_planes(2)
    seen: list[tuple[int, ...]] = []
    with torch.no_grad():
        plain, _ = net(x)
        with net.hooks([("policy.conv", lambda t: seen.append(tuple(t.shape)))]):
            hooked, _ = net(x)
    assert seen == [(2, TINY.channels, 8, 8)]
    assert torch.equal(hooked, plain)


def test_wdl_value_is_p_win_minus_p_loss() -> None:
    net = make_net(NetConfig(blocks=1, channels=8, value_channels=2, value_hidden=8, wdl=True), seed=1)
    x = sample_planes(4)
    with torch.no_grad():
        out = net.forward_heads(x)
        _, value = net(x)
    assert out["wdl"].shape == (4, 3)
    probs = out["wdl"].softmax(dim=1)
    torch.testing.assert_close(out["value"], probs[:, 0] - probs[:, 2])
    torch.testing.assert_close(value, out["value"])
    assert not torch.allclose(value, torch.zeros(4))


def test_squeeze_excitation_net_runs() -> None:
    net = make_net(NetConfig(blocks=1, channels=8, value_channels=2, value_hidden=8, se=True, se_ratio=4))
    with torch.no_grad():
        logits, value = net(sample_planes(2))
    assert logits.shape == (2, POLICY_SIZE) and value.shape == (2,)


def test_config_round_trip_and_validation() -> None:
    assert NetConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ValueError, match=r"unknown NetConfig keys.*'depth'"):
        NetConfig.from_dict({**TINY.to_dict(), "depth": 3})
    with pytest.raises(ValueError, match="blocks"):
        NetConfig(blocks=0)
    with pytest.raises(ValueError, match="se_ratio"):
        NetConfig(channels=10, se=True, se_ratio=4)
    with pytest.raises(AttributeError):
        TINY.blocks = 3  # type: ignore[misc]


def test_predict_on_numpy_matches_forward() -> None:
    net = make_net()
    x = sample_planes(5)
    with torch.no_grad():
        logits, value = net(x)
    p_logits, p_value = predict(net, x.numpy(), batch_size=2)  # several batches
    assert p_logits.dtype == np.float32 and p_logits.shape == (5, POLICY_SIZE)
    np.testing.assert_allclose(p_logits, logits.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p_value, value.numpy(), rtol=1e-5, atol=1e-6)


def test_predict_in_bf16_is_close_to_fp32_but_not_identical_and_unknown_precisions_are_refused() -> None:
    net = make_net()
    x = sample_planes(5).numpy()
    logits, value = predict(net, x)
    b_logits, b_value = predict(net, x, precision="bf16")
    assert b_logits.dtype == np.float32 and b_value.dtype == np.float32
    assert not np.array_equal(b_logits, logits)  # bf16 did run: ~3 significant digits
    np.testing.assert_allclose(b_logits, logits, atol=0.05 * np.abs(logits).max())
    np.testing.assert_allclose(b_value, value, atol=0.05)
    with pytest.raises(ValueError, match="precision"):
        predict(net, x, precision="fp16")


def test_the_format_encodes_a_black_to_move_board_for_the_net() -> None:
    net = make_net()
    board = chess.Board()
    board.push_san("d4")
    assert board.turn == chess.BLACK
    planes = net.format.encode([board])
    assert planes.shape == (1, net.config.input_planes, 8, 8)
    logits, value = predict(net, planes)
    assert logits.shape == (1, net.format.policy_size)
    assert np.isfinite(logits).all() and -1 <= value[0] <= 1
    # the legal moves of Black index into the logits
    _, idx = net.format.legal_move_indices(board)
    assert np.isfinite(logits[0, idx]).all() and len(set(idx.tolist())) == board.legal_moves.count()


def test_latents_are_the_same_from_boards_positions_planes_and_a_sample() -> None:
    """One batched `latents` whatever the input, equal to `run_with_cache` with the same batches, no hook left."""
    from alphazero_concepts.chess.positions import Position
    from alphazero_concepts.concepts.samples import positions_sample

    net = make_net()
    boards = [chess.Board()]
    for uci in ("e2e4", "e7e5", "g1f3", "b8c6"):
        boards.append(boards[-1].copy())
        boards[-1].push_uci(uci)
    planes = torch.from_numpy(encode(boards))
    layers = ["block1", "value.fc1"]
    with torch.inference_mode():
        cache = {}
        for lo in (0, 2, 4):
            _, part = net.run_with_cache(planes[lo:lo + 2], layers)
            for name in layers:
                cache.setdefault(name, []).append(part[name].reshape(len(part[name]), -1).numpy())
    want = {name: np.concatenate(parts) for name, parts in cache.items()}
    positions = [Position(chess.STARTING_FEN, [m.uci() for m in b.move_stack]) for b in boards]
    for given in (boards, iter(boards), positions, planes.numpy(), positions_sample(boards)):
        got = net.latents(given, layers, batch_size=2)
        assert all(np.array_equal(got[name], want[name]) for name in layers)
    assert net.hook_count() == 0
    assert net.latents([], layers)["block1"].shape == (0, 8 * 64)
    rows = np.array([4, 0])
    batches = list(net.iter_latents(planes.numpy(), ["stem"], batch_size=1, rows=rows))
    assert [b.rows.tolist() for b in batches] == [[4], [0]]
    assert batches[0].numpy("stem", torch.float16).dtype == np.float16


def test_hook_points_are_found_by_their_place_in_the_module_tree() -> None:
    from alphazero_concepts.nn.network import HookPoint, hook_layer_name

    assert [hook_layer_name(p) for p in ("hook_stem", "blocks.3.hook_conv1", "blocks.3.hook_out",
                                         "hook_value_fc1", "hook_mlh_out")] == \
        ["stem", "block3.conv1", "block3", "value.fc1", "mlh.out"]
    with pytest.raises(ValueError, match="HookPoint"):
        hook_layer_name("value_head.out")
    net = make_net()
    assert all(isinstance(net._hook_points[name], HookPoint) for name in net.layer_names)
