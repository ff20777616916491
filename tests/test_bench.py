"""`azc bench`: the paired timing helper and a small end-to-end run of every section."""

from __future__ import annotations

import time

import pytest
import torch

from alphazero_concepts.bench import BenchConfig, _paired_rates, run_bench
from alphazero_concepts.nn.network import AZNet, NetConfig

pytestmark = pytest.mark.unit


def test_paired_rates_alternate_the_order_and_measure_the_ratio() -> None:
    calls: list[str] = []

    def slow() -> int:  # 10 items in 20 ms
        calls.append("slow")
        time.sleep(0.02)
        return 10

    def fast() -> int:  # 10 items in 5 ms
        calls.append("fast")
        time.sleep(0.005)
        return 10

    rate_slow, rate_fast, ratio = _paired_rates(slow, fast, seconds=0.0, min_rounds=4)
    assert calls[:2] == ["slow", "fast"]  # warm-up
    assert calls[2:] == ["slow", "fast", "fast", "slow", "slow", "fast", "fast", "slow"]
    assert 100 < rate_slow < 510 and 200 < rate_fast < 2010 and rate_fast > rate_slow  # sleeps only overrun
    assert 0.15 < ratio < 0.9  # 0.25 with exact sleeps; 0.5 if every sleep overran by 10 ms, 4 if a, b swapped


def test_run_bench_reports_every_ratio_on_a_tiny_net() -> None:
    torch.manual_seed(0)
    net = AZNet(NetConfig(blocks=2, channels=8, value_channels=2, value_hidden=8)).eval()
    config = BenchConfig(positions=16, batch=8, simulations=2, sequential_trees=1, seconds=0.05, training=False)
    result = run_bench(net, config, log=lambda _: None)
    assert result["encode_matches_naive"] is True
    for key in ("encode_speedup_vs_naive", "activation_collect_vs_forward", "mcts_batched_vs_sequential",
                "mcts_vs_raw_ratio"):
        assert result[key] > 0, key
    assert result["activation_collect_layers"] == ["block0", "block1", "policy.conv"]
    assert result["mcts_batched_evaluations_per_call"] <= config.batch


def test_bench_bf16_times_both_precisions_on_a_copy_and_leaves_the_net_unchanged() -> None:
    from alphazero_concepts.bench import bench_bf16

    torch.manual_seed(0)
    net = AZNet(NetConfig(blocks=2, channels=8, value_channels=2, value_hidden=8)).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    result = bench_bf16(net, seconds=0.05, batch_size=16)
    for key in ("train_positions_per_s_fp32", "train_positions_per_s_bf16", "train_bf16_speedup",
                "net_positions_per_s_fp32", "net_positions_per_s_bf16", "net_bf16_speedup"):
        assert result[key] > 0, key
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
