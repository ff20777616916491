"""`azc bench`: throughput and speed-up ratios measured side by side in one run, written to JSON.

Every ratio compares two ways of doing the same work on the same inputs in the same process, so it says what
the design buys (vectorised encoding, batched network calls, batched search) independently of the machine.
"""

from __future__ import annotations

import copy
import gc
import itertools
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import chess
import numpy as np
import torch

from alphazero_concepts.chess.encoding import HISTORY_STEPS, N_PLANES, PositionArrays, encode
from alphazero_concepts.nn.network import AZNet, precision_context, predict
from alphazero_concepts.search.mcts import MCTS, MCTSConfig, NetEvaluator, ReferenceMCTS, UniformEvaluator


@dataclass(frozen=True)
class BenchConfig:
    quick: bool = True
    positions: int = 512  # encoding benchmark
    batch: int = 128  # trees searched together / network batch
    simulations: int = 32  # per tree, batched search
    tree_simulations: int = 200  # per tree, tree work alone (uniform evaluator): compiled core vs reference
    sequential_trees: int = 2  # trees searched one by one (one leaf per network call)
    seconds: float = 2.0  # minimum timing window for network throughput
    seed: int = 0
    training: bool = True  # self-play games/hour and training positions/s
    ray: bool = False  # Ray mining with 1 vs 2 workers (needs the `distributed` extra)

    @classmethod
    def for_mode(cls, quick: bool) -> BenchConfig:
        return cls() if quick else cls(quick=False, positions=4096, batch=256, simulations=100,
                                       sequential_trees=4, seconds=5.0)


def random_boards(n: int, seed: int = 0, min_plies: int = 6, max_plies: int = 60) -> list[chess.Board]:
    """Boards with history from seeded random games (positions reached by legal random play)."""
    rng = random.Random(seed)
    boards = []
    while len(boards) < n:
        board = chess.Board()
        for _ in range(rng.randint(min_plies, max_plies)):
            moves = list(board.legal_moves)
            if not moves:
                break
            board.push(rng.choice(moves))
        if not board.is_game_over():
            boards.append(board)
    return boards


def naive_encode(boards: list[chess.Board]) -> np.ndarray:
    """Reference encoder with per-square Python loops (the baseline the vectorised encoder is compared to)."""
    out = np.zeros((len(boards), N_PLANES, 8, 8), dtype=np.float32)
    for i, board in enumerate(boards):
        us = board.turn
        b = board.copy()
        for step in range(HISTORY_STEPS):
            for square in chess.SQUARES:
                piece = b.piece_at(square)
                if piece is None:
                    continue
                rank, file = chess.square_rank(square), chess.square_file(square)
                if us == chess.BLACK:
                    rank = 7 - rank
                plane = piece.piece_type - 1 + (0 if piece.color == us else 6)
                out[i, 14 * step + plane, rank, file] = 1.0
            if b.is_repetition(2):
                out[i, 14 * step + 12] = 1.0
            if b.is_repetition(3):
                out[i, 14 * step + 13] = 1.0
            if not b.move_stack:
                break
            b.pop()
        out[i, 112] = float(us == chess.WHITE)
        out[i, 113] = board.ply() / 200.0
        them = not us
        out[i, 114] = board.has_kingside_castling_rights(us)
        out[i, 115] = board.has_queenside_castling_rights(us)
        out[i, 116] = board.has_kingside_castling_rights(them)
        out[i, 117] = board.has_queenside_castling_rights(them)
        out[i, 118] = board.halfmove_clock / 100.0
    return out


def _rate(fn: Callable[[], int], seconds: float, repeats: int = 3, warmup: bool = True) -> float:
    """Items per second of `fn` (which returns how many items it did): the best of `repeats` windows of at least
    `seconds / repeats` each, after a warm-up call. Other load on the machine only slows a window down, so the
    best window is the closest to the code's own speed (as `timeit` takes the minimum)."""
    if warmup:
        fn()
    best = 0.0
    for _ in range(repeats):
        done, start = 0, time.perf_counter()
        while True:
            done += fn()
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / repeats:
                break
        best = max(best, done / elapsed)
    return best


def _paired_rates(a: Callable[[], int], b: Callable[[], int], seconds: float,
                  min_rounds: int = 6, warmup: bool = True) -> tuple[float, float, float]:
    """Items per second of `a` and of `b` (each returns how many items it did) and the ratio of the two rates.

    The calls alternate (a b, then b a, …) for at least `seconds` and `min_rounds` rounds, after a warm-up call of
    each (unless `warmup` is False: long calls that need none). Rates are medians over the calls; the ratio is the
    median over rounds of a's rate over b's, each round's pair run back to back. Pairing cancels slow drifts in
    the machine's speed (other load, clock frequency, disk write-back) that two separate timing windows would put
    into the ratio.
    """
    if warmup:
        a(), b()
    rates: dict[Callable[[], int], list[float]] = {a: [], b: []}
    ratios: list[float] = []
    start = time.perf_counter()
    while len(ratios) < min_rounds or time.perf_counter() - start < seconds:
        for fn in (a, b) if len(ratios) % 2 == 0 else (b, a):
            t0 = time.perf_counter()
            done = fn()
            rates[fn].append(done / (time.perf_counter() - t0))
        ratios.append(rates[a][-1] / rates[b][-1])
    return float(np.median(rates[a])), float(np.median(rates[b])), float(np.median(ratios))


def run_bench(net: AZNet, config: BenchConfig, log: Callable[[str], None] = print) -> dict:
    """Measure everything side by side; returns the JSON-ready result dict."""
    torch.manual_seed(config.seed)
    net.eval()
    result: dict = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "model": {"blocks": net.config.blocks, "channels": net.config.channels, "se": net.config.se},
        "config": config.__dict__,
    }
    boards = random_boards(config.positions, config.seed)

    log("encoding …")
    fast = encode(boards[:64])
    slow = naive_encode(boards[:64])
    result["encode_matches_naive"] = bool(np.array_equal(fast, slow))
    enc_rate = _rate(lambda: len(encode(boards)), config.seconds)
    naive_boards = boards[: max(32, config.positions // 8)]
    naive_rate = _rate(lambda: len(naive_encode(naive_boards)), config.seconds)
    result["encode_positions_per_s"] = enc_rate
    result["encode_naive_positions_per_s"] = naive_rate
    result["encode_speedup_vs_naive"] = enc_rate / naive_rate

    log("network …")
    planes = encode(boards[: config.batch])
    one = planes[:1]
    result["net_positions_per_s_bs1"] = _rate(lambda: len(predict(net, one, 1)[1]), config.seconds)
    result["net_positions_per_s_batched"] = _rate(
        lambda: len(predict(net, planes, config.batch)[1]), config.seconds)
    result["net_batch"] = config.batch

    log("activation collection …")
    import tempfile

    from alphazero_concepts.concepts.activations import collect

    coll_boards = boards  # every bench position: a store of a few batches, fixed costs (files, final sync) included
    layers = [n for n in ("block0", f"block{net.config.blocks - 1}", "policy.conv") if n in net.layer_names]

    def forward_only() -> int:  # encode + forward, same batches as the collection
        for lo in range(0, len(coll_boards), config.batch):
            predict(net, encode(coll_boards[lo : lo + config.batch]), config.batch)
        return len(coll_boards)

    with tempfile.TemporaryDirectory() as tmp:
        stores = itertools.count()

        def collection() -> int:  # a new store each call: created, filled, synced to disk (deleted untimed)
            collect(net, coll_boards, layers, f"{tmp}/store{next(stores)}", batch_size=config.batch)
            return len(coll_boards)

        (result["activation_collect_positions_per_s"], result["forward_positions_per_s_with_encoding"],
         result["activation_collect_vs_forward"]) = _paired_rates(collection, forward_only, 4 * config.seconds,
                                                                  min_rounds=10)
    result["activation_collect_layers"] = layers

    log("search tree, uniform evaluator: compiled core vs reference …")
    result.update(bench_tree(config))

    log("search …")
    roots = random_boards(config.batch, config.seed + 1)
    mcts_cfg = MCTSConfig(simulations=config.simulations)
    evaluator = NetEvaluator(net, batch_size=config.batch)
    seq_roots = roots[: config.sequential_trees]

    def sequential() -> int:  # one tree at a time: one leaf per network call
        for board in seq_roots:
            MCTS(evaluator, mcts_cfg).search([board])
        return len(seq_roots) * config.simulations

    calls: list[float] = []

    def batched() -> int:
        search = MCTS(evaluator, mcts_cfg)
        search.search(roots)
        calls.append(search.evaluations / max(1, search.calls))
        return len(roots) * config.simulations

    def batched_overlap() -> int:  # the same search, half the trees selecting during the other half's call
        MCTS(evaluator, MCTSConfig(simulations=config.simulations, overlap_min_trees=2)).search(roots)
        return len(roots) * config.simulations

    root_planes = encode(roots)

    def against_raw() -> tuple[float, float]:
        """(search simulations/s, raw network positions/s), the two measured call by call in one search."""
        paired = RawPairedEvaluator(evaluator, net, root_planes)
        search = MCTS(paired, mcts_cfg)
        start = time.perf_counter()
        search.search(roots)
        searching = time.perf_counter() - start - paired.raw_seconds
        calls.append(search.evaluations / max(1, search.calls))
        return len(roots) * config.simulations / searching, paired.raw_positions / paired.raw_seconds

    result["mcts_sims_per_s_sequential"] = _rate(sequential, config.seconds)
    # the batched search against the network alone, interleaved network call by network call: what the search keeps
    # of the network's throughput, with the machine's other load the same for both
    runs = [against_raw() for _ in range(2 if config.quick else 3)]
    result["mcts_sims_per_s_batched"] = float(np.median([sims for sims, _ in runs]))
    result["net_positions_per_s_paired"] = float(np.median([raw for _, raw in runs]))
    result["mcts_vs_raw_ratio"] = float(np.median([sims / raw for sims, raw in runs]))
    (result["mcts_sims_per_s_batched_overlap"], _,
     result["mcts_overlap_speedup"]) = _paired_rates(batched_overlap, batched, config.seconds, min_rounds=2,
                                                     warmup=False)
    result["mcts_batched_evaluations_per_call"] = float(np.mean(calls))
    result["mcts_batched_vs_sequential"] = result["mcts_sims_per_s_batched"] / result["mcts_sims_per_s_sequential"]
    if config.training:
        from alphazero_concepts.training.selfplay import bench_selfplay, bench_train

        log("self-play and training …")
        result.update(bench_selfplay(net))
        result.update(bench_train(net))
        result.update(bench_bf16(net, config.seconds))
    if config.ray:
        from alphazero_concepts.distributed.bench import bench_ray_mining

        log("Ray mining, 1 vs 2 workers …")
        result.update(bench_ray_mining(net, roots=6 if config.quick else 16, repeats=1 if config.quick else 3,
                                       log=log))
    return result


def bench_bf16(net: AZNet, seconds: float, batch_size: int = 256, seed: int = 0) -> dict[str, float]:
    """bfloat16 autocast against float32, paired: training steps (forward, backward, AdamW on a copy of `net`) and
    forward passes of a batch. Fast only where the hardware has bfloat16 units (AVX-512 BF16, AMX, a GPU)."""
    model = copy.deepcopy(net).float().to(net.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, model.config.input_planes, 8, 8, generator=gen).to(net.device)

    def step(bf16: bool) -> int:
        model.train()
        with precision_context(net.device, "bf16" if bf16 else "fp32"):
            heads = model.forward_heads(x)
        loss = heads["policy"].float().logsumexp(dim=1).mean() + heads["value"].float().square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return batch_size

    n = min(128, batch_size)

    @torch.inference_mode()
    def forward(bf16: bool) -> int:
        model.eval()
        with precision_context(net.device, "bf16" if bf16 else "fp32"):
            model.forward_heads(x[:n])
        return n

    bf16_train, fp32_train, train_ratio = _paired_rates(lambda: step(True), lambda: step(False), seconds,
                                                        min_rounds=3)
    bf16_net, fp32_net, net_ratio = _paired_rates(lambda: forward(True), lambda: forward(False), seconds)
    return {"train_positions_per_s_fp32": fp32_train, "train_positions_per_s_bf16": bf16_train,
            "train_bf16_speedup": train_ratio, "net_positions_per_s_fp32": fp32_net,
            "net_positions_per_s_bf16": bf16_net, "net_bf16_speedup": net_ratio}


class RawPairedEvaluator:
    """An evaluator that, after each network call of the search, runs the network alone once more on a full batch
    (`planes`) and times that call apart: the search's time less these calls against the raw network's throughput,
    both under the same load at the same moments."""

    def __init__(self, evaluator: NetEvaluator, net: AZNet, planes: np.ndarray) -> None:
        self.inner, self.net, self.planes = evaluator, net, planes
        self.format = evaluator.format
        self.raw_seconds, self.raw_positions = 0.0, 0

    def evaluate(self, arrays: PositionArrays, legal: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        out = self.inner.evaluate(arrays, legal)
        start = time.perf_counter()
        predict(self.net, self.planes, len(self.planes))
        self.raw_seconds += time.perf_counter() - start
        self.raw_positions += len(self.planes)
        return out


def bench_tree(config: BenchConfig) -> dict:
    """Tree work alone: `config.batch` trees × `config.tree_simulations` simulations with the uniform evaluator
    (no network), the compiled core and the reference search interleaved in pairs, in this process.

    Each timed call ends by collecting its own garbage (the reference's trees are cycles of node objects that only
    the cyclic collector frees), with the objects alive before the measurement frozen out of the collector's
    scans, so that neither side pays for the other's garbage or for the rest of the heap.
    `mcts_tree_same_visits` checks, on the timed searches themselves, that both cores visited the same moves."""
    roots = random_boards(config.batch, config.seed + 2)
    evaluator = UniformEvaluator()
    mcts_cfg = MCTSConfig(simulations=config.tree_simulations)
    sims = len(roots) * config.tree_simulations
    last: dict[str, list] = {}  # visits and principal variations only: a live tree would be scanned by every collection

    def compiled() -> int:
        last["compiled"] = [(r.visits, r.pv) for r in MCTS(evaluator, mcts_cfg).search(roots)]
        gc.collect()
        return sims

    def reference() -> int:
        last["reference"] = [(r.visits, r.pv) for r in ReferenceMCTS(evaluator, mcts_cfg).search(roots)]
        gc.collect()
        return sims

    MCTS(evaluator, MCTSConfig(simulations=2)).search(roots[:2])  # load (or compile) the kernels untimed
    gc.collect()
    gc.freeze()
    try:
        new, ref, ratio = _paired_rates(compiled, reference, config.seconds, min_rounds=3, warmup=False)
    finally:
        gc.unfreeze()
    same = all(np.array_equal(visits, ref_visits) and pv == ref_pv
               for (visits, pv), (ref_visits, ref_pv) in zip(last["compiled"], last["reference"], strict=True))
    return {"mcts_tree_sims_per_s_null": new, "mcts_tree_sims_per_s_null_reference": ref,
            "mcts_tree_speedup_vs_reference": ratio, "mcts_tree_same_visits": same,
            "mcts_tree_trees": len(roots), "mcts_tree_simulations": config.tree_simulations}
