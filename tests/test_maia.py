"""The real Maia networks (lc0 format, ../shared/data/models/maia): they load, predict the moves masters played,
their WDL heads rank the decisive games' results, and `azc analyse --model maia-1900.pb.gz FEN` works.

A wrong input encoding or move map leaves a few percent of top-1 agreement; the right one gives Maia-1900 about 45%
on master games. Positions: games read at seeded byte offsets of the masters PGN (a spread over its 1971–2024
dates without parsing 52 MB), up to 10 positions of ply ≥ 10 per game, with their move history.

    python tests/test_maia.py [GAMES]    prints the accuracy table of all nine networks (docs/lc0.md)
"""

from __future__ import annotations

import io
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import chess
import chess.pgn
import numpy as np
import pytest
import torch

from alphazero_concepts.chess import lc0_format as lc0f
from alphazero_concepts.chess.encoding import PositionArrays, game_to_arrays
from alphazero_concepts.nn.loading import load_network
from alphazero_concepts.nn.network import predict

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MAIA = SHARED / "models" / "maia"
MASTERS = SHARED / "human" / "masters_pgnmentor_sample.pgn"
RATINGS = tuple(range(1100, 2000, 100))
# first 16 hex digits of each file's sha256, as recorded in ../shared/data/SOURCES.md
SHA256_PREFIX = {1100: "e1cf1cd0c96b8a4f", 1200: "ead4ba953f233ae7", 1300: "36195f87bf476183",
                 1400: "d5353ea6766356da", 1500: "35ab6f20421d59e1", 1600: "d2c9e5948581acf4",
                 1700: "d277eacd792d340a", 1800: "0031ad7c4256b1fd", 1900: "e2f565f42d7cd9f1"}

pytestmark = [
    pytest.mark.needs_shared,
    pytest.mark.integration,
    pytest.mark.skipif(not (MAIA.is_dir() and MASTERS.is_file()),
                       reason="../shared/data/models/maia or ../shared/data/human not present"),
]


def maia_path(rating: int) -> Path:
    return MAIA / f"maia-{rating}.pb.gz"


def sample_games(path: Path, n_games: int, seed: int, chunk: int = 1 << 16) -> list[chess.pgn.Game]:
    """Games starting after `n_games` seeded byte offsets of a PGN file (duplicates and unreadable games dropped)."""
    rng = random.Random(seed)
    size = path.stat().st_size
    games, seen = [], set()
    with open(path, "rb") as fh:
        for offset in sorted(rng.randrange(size) for _ in range(n_games)):
            fh.seek(offset)
            data = fh.read(chunk)
            start = data.find(b"\n[Event ")
            end = data.find(b"\n[Event ", start + 1)
            if start < 0 or end < 0 or offset + start in seen:
                continue
            seen.add(offset + start)
            game = chess.pgn.read_game(io.StringIO(data[start + 1 : end].decode("utf-8", "replace")))
            if game is not None and not game.errors:
                games.append(game)
    return games


@dataclass
class Sample:
    """Positions with history, the lc0 index of the move played, the legal indices, and White's game result."""

    arrays: PositionArrays
    played: np.ndarray
    legal: list[np.ndarray]
    white_score: np.ndarray  # 1, 0.5 or 0

    def __len__(self) -> int:
        return len(self.played)


def sample_positions(games: list[chess.pgn.Game], per_game: int, seed: int, min_ply: int = 10) -> Sample:
    rng = np.random.default_rng(seed)
    parts, played, legal, score = [], [], [], []
    for game in games:
        moves = list(game.mainline_moves())
        if len(moves) <= min_ply:
            continue
        chosen = set(rng.choice(np.arange(min_ply, len(moves)), size=min(per_game, len(moves) - min_ply),
                                replace=False).tolist())
        board = game.board()
        for ply, move in enumerate(moves):
            if ply in chosen:
                played.append(lc0f.move_to_index(move, board))
                legal.append(lc0f.legal_move_indices(board)[1])
                score.append({"1-0": 1.0, "0-1": 0.0}.get(game.headers.get("Result", ""), 0.5))
            board.push(move)
        arrays = game_to_arrays(game.board(), moves)
        idx = np.array(sorted(chosen))
        parts.append([arrays.bitboards[idx], arrays.repetitions[idx], arrays.turn[idx], arrays.castling[idx],
                      arrays.ply[idx], arrays.halfmove[idx]])
    columns = [np.concatenate(col) for col in zip(*parts, strict=True)]
    return Sample(PositionArrays(*columns), np.array(played), legal, np.array(score))


def evaluate(rating: int, sample: Sample) -> tuple[float, np.ndarray]:
    """Top-1 agreement of Maia-`rating`'s policy (over legal moves) with the moves played, and its values."""
    net, _ = load_network(maia_path(rating))
    logits, values = predict(net, net.format.arrays_to_planes(sample.arrays), batch_size=256)
    top = [ix[np.argmax(logits[i, ix])] for i, ix in enumerate(sample.legal)]
    return float(np.mean(np.array(top) == sample.played)), values


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney, ties counted half): P(score of a positive > score of a negative)."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2
    ranks[order] = np.repeat(avg, counts)
    pos = labels.astype(bool)
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def white_expected_score(values: np.ndarray, sample: Sample) -> np.ndarray:
    """(1 + value) / 2 = P(win) + P(draw) / 2 of the side to move, turned to White's view."""
    stm = (1 + values) / 2
    return np.where(sample.arrays.turn, stm, 1 - stm)


@pytest.fixture(scope="module")
def sample() -> Sample:
    torch.set_num_threads(1)
    return sample_positions(sample_games(MASTERS, 250, seed=0), per_game=10, seed=0)


def test_auc_helper() -> None:
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5


def test_every_maia_network_loads() -> None:
    for rating in RATINGS:
        net, meta = load_network(maia_path(rating))
        c = net.config
        assert (c.blocks, c.channels, c.se, c.policy_head, c.wdl, c.moves_left) == (6, 64, True, "convolution",
                                                                                    True, False)
        assert meta.name == f"maia-{rating}" and meta.extra["sha256"].startswith(SHA256_PREFIX[rating])
        assert meta.extra["network"] == "NETWORK_SE_WITH_HEADFORMAT" and meta.extra["policy"] == "POLICY_CONVOLUTION"


def test_maia_1900_predicts_master_moves_and_results(sample: Sample) -> None:
    assert len(sample) >= 2000
    accuracy, values = evaluate(1900, sample)
    assert accuracy >= 0.40, f"Maia-1900 top-1 agreement {accuracy:.3f} on {len(sample)} positions"
    decisive = sample.white_score != 0.5
    area = auc(white_expected_score(values, sample)[decisive], sample.white_score[decisive])
    assert decisive.sum() > 800
    assert area >= 0.65, f"WDL expected score vs decisive results: AUC {area:.3f}"


def test_every_maia_network_predicts_far_above_chance(sample: Sample) -> None:
    part = Sample(PositionArrays(*(x[:300] for x in (sample.arrays.bitboards, sample.arrays.repetitions,
                                                       sample.arrays.turn, sample.arrays.castling,
                                                       sample.arrays.ply, sample.arrays.halfmove))),
                  sample.played[:300], sample.legal[:300], sample.white_score[:300])
    for rating in RATINGS:
        accuracy, _ = evaluate(rating, part)
        assert accuracy >= 0.33, f"Maia-{rating}: {accuracy:.3f}"


def test_cli_analyse_with_a_maia_file() -> None:
    from typer.testing import CliRunner

    from alphazero_concepts.cli import app

    fen = "r1bqkbnr/pppp1ppp/2n5/1B2p3/4P3/5N2/PPPP1PPP/RNBQK2R b KQkq - 3 3"
    result = CliRunner().invoke(app, ["analyse", "--model", str(maia_path(1900)), fen, "--sims", "16", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{"):])
    assert data["model"] == "maia-1900"
    board = chess.Board(fen)
    moves = [chess.Move.from_uci(m["uci"]) for m in data["moves"]]
    assert set(moves) == set(board.legal_moves)
    assert sum(m["visits"] for m in data["moves"]) == 16
    priors = {m["uci"]: m["prior"] for m in data["moves"]}
    assert abs(sum(priors.values()) - 1) < 1e-4
    assert max(priors, key=priors.get) in ("g8f6", "a7a6", "d7d6")  # a human's answers to the Ruy Lopez
    assert -1 <= data["nn_value"] <= 1


def accuracy_table(n_games: int = 1000) -> str:
    """Markdown table: top-1 agreement of every Maia network (and Maia-1900's WDL AUC) on the masters sample."""
    torch.set_num_threads(1)
    data = sample_positions(sample_games(MASTERS, n_games, seed=0), per_game=10, seed=0)
    rows = ["| network | top-1 agreement | WDL AUC (decisive games) |", "| --- | --- | --- |"]
    decisive = data.white_score != 0.5
    for rating in RATINGS:
        accuracy, values = evaluate(rating, data)
        area = auc(white_expected_score(values, data)[decisive], data.white_score[decisive])
        rows.append(f"| maia-{rating} | {100 * accuracy:.1f}% | {area:.3f} |")
    head = (f"{len(data)} positions (ply ≥ 10) from {n_games} seeded offsets of masters_pgnmentor_sample.pgn, "
            f"{int(decisive.sum())} of them from decisive games")
    return head + "\n\n" + "\n".join(rows)


if __name__ == "__main__":
    print(accuracy_table(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
