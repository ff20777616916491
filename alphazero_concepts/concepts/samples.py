"""Position samples: human games, the teacher's self-play, or a position file, kept as arrays (filters, validation).

A `PositionSample` stores each position as `PositionArrays` rows (bitboards of the position and its 7
predecessors, counters), so the network's history planes are rebuilt in one vectorised call without replaying
games, plus its FEN (legal moves, display) and where it came from (game index and ply). Self-play samples also
keep their games as (start FEN, UCI moves), so a position can be rebuilt as a `chess.Board` with its move stack
(searches from it see the same history planes).

Samples are saved as one `.npz` (written atomically) and reused: the teachability pool and the novelty bases are
built from the same files a user can inspect and pass again with `--pool` / `--machine`.

Book plies: human positions before `min_ply` and self-play positions before `skip_plies` (counted from the game's
start) are never sampled; openings are shared knowledge, not what either side "knows".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import chess
import numpy as np

from alphazero_concepts.chess.encoding import PositionArrays, boards_to_arrays, game_to_arrays
from alphazero_concepts.chess.positions import (
    InputError,
    Position,
    ReadReport,
    boards_of,
    fast_fens,
    read_pgn_games,
    read_positions,
)
from alphazero_concepts.core.config import DictConfig
from alphazero_concepts.core.files import read_npz, write_npz
from alphazero_concepts.nn.network import HookedNet, predict
from alphazero_concepts.search.games import play_batched
from alphazero_concepts.search.mcts import MCTS, MCTSConfig, NetEvaluator, legal_softmax
from alphazero_concepts.search.roots import bundled_openings

SAMPLE_VERSION = 1


def _take(a: PositionArrays, rows: np.ndarray) -> PositionArrays:
    return PositionArrays(*(getattr(a, f.name)[rows] for f in fields(PositionArrays)))


def _concat(parts: Sequence[PositionArrays]) -> PositionArrays:
    return PositionArrays(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(PositionArrays)))


@dataclass
class PositionSample:
    """N positions as arrays, FENs and origins (game index, ply; −1 when unknown)."""

    arrays: PositionArrays
    fens: list[str]
    origin: np.ndarray
    games: list[tuple[str, list[str]]] = field(default_factory=list)
    source: str = ""
    info: dict = field(default_factory=dict)
    _legal: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.origin = np.asarray(self.origin, dtype=np.int64).reshape(-1, 2)
        if not len(self.arrays) == len(self.fens) == len(self.origin):
            raise ValueError(f"sample parts differ in length: {len(self.arrays)} arrays, {len(self.fens)} FENs, "
                             f"{len(self.origin)} origins")

    def __len__(self) -> int:
        return len(self.fens)

    def subset(self, rows: Sequence[int] | np.ndarray) -> PositionSample:
        """The positions at `rows` (same games list)."""
        rows = np.asarray(rows, dtype=np.int64)
        return PositionSample(_take(self.arrays, rows), [self.fens[i] for i in rows], self.origin[rows],
                              self.games, self.source, dict(self.info))

    def planes(self, fmt, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Input planes of `rows` (all when None) in the network format `fmt`."""
        a = self.arrays if rows is None else _take(self.arrays, np.asarray(rows, dtype=np.int64))
        return fmt.arrays_to_planes(a)

    def board(self, i: int) -> chess.Board:
        """Position `i` as a board, with its move stack when the sample keeps its games (else from the FEN)."""
        g, ply = (int(x) for x in self.origin[i])
        if self.games and 0 <= g < len(self.games):
            start, moves = self.games[g]
            board = chess.Board(start)
            for uci in moves[:ply]:
                board.push_uci(uci)
            return board
        return chess.Board(self.fens[i])

    def legal(self, fmt) -> list[np.ndarray]:
        """Policy indices of the legal moves of every position in `fmt` (computed once per format)."""
        name = getattr(fmt, "name", str(fmt))
        if name not in self._legal:
            self._legal[name] = [fmt.legal_move_indices(chess.Board(f))[1] for f in self.fens]
        return self._legal[name]

    # ----------------------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the sample as one `.npz` (atomically)."""
        header = {"version": SAMPLE_VERSION, "source": self.source, "info": self.info, "games": self.games}
        arrays = {f.name: getattr(self.arrays, f.name) for f in fields(PositionArrays)}
        return write_npz(path, header, {**arrays, "fens": np.array(self.fens, dtype=str), "origin": self.origin},
                         compressed=True)

    @classmethod
    def load(cls, path: str | Path) -> PositionSample:
        """Read a sample written by `save`; `InputError` naming the file when it is not one."""
        path = Path(path)
        try:
            names = [f.name for f in fields(PositionArrays)]
            header, data = read_npz(path, [*names, "fens", "origin"])
            arrays = PositionArrays(*(data[n] for n in names))
            fens = [str(x) for x in data["fens"]]
            origin = data["origin"]
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"not a position sample ({type(exc).__name__}: {exc})", source=str(path),
                             line=None) from exc
        if header.get("version") != SAMPLE_VERSION:
            raise InputError(f"sample version {header.get('version')!r}, this code reads {SAMPLE_VERSION}",
                             source=str(path), line=None)
        games = [(str(s), list(m)) for s, m in header.get("games", [])]
        return cls(arrays, fens, origin, games, header.get("source", ""), header.get("info", {}))


# --------------------------------------------------------------------------------------------------------------
# Self-play of the teacher


@dataclass(frozen=True)
class SelfPlaySampleConfig(DictConfig):
    """How the teacher's self-play positions are generated.

    mode "policy" samples the raw policy (one batched forward pass per ply for all games: fast); "mcts" plays
    from batched MCTS visit counts with Dirichlet noise at the root (AlphaZero's self-play, `simulations` per
    move). The first `sample_plies` plies of a game (from the start position) are drawn with `temperature`,
    later ones are the best move. Games start from the bundled opening lines, cycled.
    """

    positions: int = 30_000
    parallel_games: int = 64
    mode: str = "policy"
    simulations: int = 32
    temperature: float = 1.0
    sample_plies: int = 30
    skip_plies: int = 10
    max_plies: int = 200
    oversample: float = 1.5  # play whole games until this many × `positions` were seen, then draw `positions`
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("policy", "mcts"):
            raise ValueError(f"SelfPlaySampleConfig.mode must be 'policy' or 'mcts', got {self.mode!r}")
        if self.positions < 1 or self.parallel_games < 1:
            raise ValueError("SelfPlaySampleConfig.positions and parallel_games must be ≥ 1")
        if self.oversample < 1.0:
            raise ValueError(f"SelfPlaySampleConfig.oversample must be ≥ 1, got {self.oversample}")


def _choose(weights: np.ndarray, ply: int, config: SelfPlaySampleConfig, rng: np.random.Generator) -> int:
    if ply < config.sample_plies and config.temperature > 0 and weights.sum() > 0:
        p = np.asarray(weights, dtype=np.float64) ** (1.0 / config.temperature)
        return int(rng.choice(len(p), p=p / p.sum()))
    return int(np.argmax(weights))


def selfplay_sample(net: HookedNet, config: SelfPlaySampleConfig | None = None,
                    openings: Sequence[tuple[str, chess.Board]] | None = None,
                    progress: Callable[[int, int], None] | None = None) -> PositionSample:
    """`config.positions` positions drawn uniformly from the teacher's self-play games (seeded, reproducible)."""
    config = config or SelfPlaySampleConfig()
    rng = np.random.default_rng(config.seed)
    openings = list(openings or bundled_openings())
    fmt = net.format
    mcts = None
    if config.mode == "mcts":
        mcts = MCTS(NetEvaluator(net), MCTSConfig(simulations=config.simulations, add_noise=True), rng=rng)
    target = math.ceil(config.positions * config.oversample)
    parts: list[PositionArrays] = []
    fens: list[str] = []
    origin: list[tuple[int, int]] = []
    games: list[tuple[str, list[str]]] = []

    def choose(live: list[tuple[int, chess.Board]]) -> list[chess.Move]:
        """Keep the live positions past the book plies, then every live game's move in one batched call."""
        live_boards = [board for _, board in live]
        arrays = boards_to_arrays(live_boards)
        keep = [j for j, b in enumerate(live_boards) if len(b.move_stack) >= config.skip_plies]
        if keep:
            parts.append(_take(arrays, np.array(keep)))
            fens.extend(live_boards[j].fen() for j in keep)
            origin.extend((live[j][0], len(live_boards[j].move_stack)) for j in keep)
            if progress:
                progress(min(len(fens), target), target)
        if mcts is not None:
            results = mcts.search(live_boards)
            return [r.moves[_choose(r.visits, len(b.move_stack), config, rng)]
                    for r, b in zip(results, live_boards, strict=True)]
        logits, _ = predict(net, fmt.arrays_to_planes(arrays))
        legal = [fmt.legal_move_indices(b) for b in live_boards]
        probs = legal_softmax(logits, [ix for _, ix in legal])
        return [mv[_choose(p, len(b.move_stack), config, rng)]
                for (mv, _), p, b in zip(legal, probs, live_boards, strict=True)]

    per_game = 60.0  # positions a game yields (running estimate): sizes the last wave so that games finish
    while len(fens) < target:
        first = len(games)
        n_games = min(config.parallel_games, max(1, math.ceil((target - len(fens)) / per_game)))
        boards = [openings[(first + k) % len(openings)][1].copy() for k in range(n_games)]
        games.extend((b.root().fen(), []) for b in boards)
        before = len(fens)
        play_batched(list(enumerate(boards, first)), choose, play=lambda game, move: game[1].push(move),
                     end=lambda game: True if game[1].is_game_over(claim_draw=True)
                     or len(game[1].move_stack) >= config.max_plies else None,
                     end_at_start=lambda game: True if game[1].is_game_over(claim_draw=True) else None)
        for k, board in enumerate(boards):
            games[first + k] = (games[first + k][0], [m.uci() for m in board.move_stack])
        per_game = max(1.0, (len(fens) - before) / n_games) if len(fens) > before else per_game
        if len(fens) == before:
            raise ValueError("self-play produced no positions after the book plies: lower skip_plies")
    all_arrays = _concat(parts)
    rows = np.sort(rng.choice(len(fens), size=min(config.positions, len(fens)), replace=False))
    return PositionSample(_take(all_arrays, rows), [fens[i] for i in rows], np.array(origin)[rows], games,
                          source=f"selfplay:{config.mode}",
                          info={"selfplay": config.to_dict(), "games": len(games), "seen": len(fens)})


# --------------------------------------------------------------------------------------------------------------
# Human games and position files


def bundled_human_games() -> Path:
    """The package's sample of human games (250 master games, TWIC 920; see data/SOURCES.md)."""
    from importlib import resources

    return Path(str(resources.files("alphazero_concepts").joinpath("data/human_games.pgn")))


def portable_path(path: str | Path) -> str:
    """`path` as recorded in artifacts: `<package>/…` for a file inside this package (the bundled games), so that a
    committed record does not carry the absolute path of the checkout that made it; other paths unchanged."""
    from importlib import resources

    package = Path(str(resources.files("alphazero_concepts"))).resolve()
    resolved = Path(path).resolve()
    return f"<package>/{resolved.relative_to(package).as_posix()}" if resolved.is_relative_to(package) else str(path)


def human_sample(pgn: str | Path, n: int, *, min_ply: int = 10, max_games: int | None = None,
                 min_elo: int | None = None, seed: int = 0, report: ReadReport | None = None) -> PositionSample:
    """`n` positions drawn uniformly (seeded) from the PGN's games at plies ≥ `min_ply` (before a move is played).

    Games are streamed (at most `max_games`); bad games are skipped and counted in `report`. When the file has
    fewer eligible positions than `n`, all of them are returned (`info["short"]` says so).
    """
    records = [g for g in read_pgn_games(pgn, report=report, max_games=max_games, min_elo=min_elo)
               if len(g.moves) > min_ply]
    counts = np.array([len(g.moves) - min_ply for g in records], dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        raise InputError(f"no positions at ply ≥ {min_ply} in {len(records)} readable games", source=str(pgn),
                         line=None)
    rng = np.random.default_rng(seed)
    flat = np.sort(rng.choice(total, size=min(n, total), replace=False))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    game_of = np.searchsorted(starts, flat, side="right") - 1
    parts, fens, origin, games = [], [], [], []
    for g in np.unique(game_of):
        rec = records[g]
        plies = flat[game_of == g] - starts[g] + min_ply
        board = rec.board()
        wanted = set(int(p) for p in plies)
        for ply, move in enumerate(rec.moves):
            if ply in wanted:
                fens.append(board.fen())
            board.push(move)
        parts.append(_take(game_to_arrays(rec.board(), rec.moves), plies))
        origin.extend((len(games), int(p)) for p in plies)
        games.append((rec.start_fen, [m.uci() for m in rec.moves]))
    return PositionSample(_concat(parts), fens, np.array(origin), games, source=f"human:{portable_path(pgn)}",
                          info={"games_read": len(records), "eligible": total, "min_ply": min_ply,
                                "short": total < n, "seed": seed})


def positions_sample(positions: Sequence[Position | chess.Board], source: str = "") -> PositionSample:
    """A sample of given positions (each keeps its own history: its start FEN and moves)."""
    boards = list(boards_of(positions))
    games = [(b.root().fen(), [m.uci() for m in b.move_stack]) for b in boards]
    origin = [(i, len(b.move_stack)) for i, b in enumerate(boards)]
    parts = [boards_to_arrays(boards[i:i + 1024]) for i in range(0, len(boards), 1024)]
    return PositionSample(_concat(parts), fast_fens(boards), np.array(origin).reshape(-1, 2), games,
                          source=source)


def load_sample(path: str | Path, n: int | None = None, *, min_ply: int = 10, seed: int = 0,
                max_games: int | None = None) -> PositionSample:
    """A sample from a file: a saved sample (.npz), PGN games (sampled as `human_sample`), or EPD/FEN/CSV positions.

    `n` draws that many positions uniformly (seeded); None keeps all (PGN: all eligible positions).
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    if path.suffix == ".npz":
        sample = PositionSample.load(path)
    elif path.suffix.lower() == ".pgn":
        return human_sample(path, n if n is not None else 10**12, min_ply=min_ply, max_games=max_games, seed=seed)
    else:
        sample = positions_sample(list(read_positions(path)), source=str(path))
    if n is not None and n < len(sample):
        sample = sample.subset(np.sort(rng.choice(len(sample), size=n, replace=False)))
    return sample


# --------------------------------------------------------------------------------------------------------------
# Running a network over a sample


def forward(net: HookedNet, sample: PositionSample, layers: Sequence[str] = (), rows: np.ndarray | None = None,
            batch_size: int = 512) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
    """Stream (rows, policy logits (b, P) float32, {layer: (b, d) float32}) over the sample in batches."""
    net.eval()
    for batch in net.iter_latents(sample, layers, batch_size, rows=np.arange(len(sample)) if rows is None else rows):
        yield batch.rows, batch.policy.float().cpu().numpy(), {name: batch.numpy(name) for name in layers}


def layer_latents(net: HookedNet, sample: PositionSample, layers: Sequence[str], batch_size: int = 512
                  ) -> dict[str, np.ndarray]:
    """(N, d) float32 latents of every position at each layer, in memory (novelty bases use a few thousand)."""
    net.eval()
    return net.latents(sample, layers, batch_size)


def legal_argmax(logits: np.ndarray, legal: Sequence[np.ndarray]) -> np.ndarray:
    """Policy index of the highest-logit legal move of each row (−1 where no move is legal)."""
    out = np.full(len(legal), -1, dtype=np.int64)
    for i, ix in enumerate(legal):
        if len(ix):
            out[i] = ix[int(np.argmax(logits[i, ix]))]
    return out


def top1(net: HookedNet, sample: PositionSample, rows: np.ndarray | None = None, batch_size: int = 512
         ) -> np.ndarray:
    """The network's top-1 legal move (policy index) at each of `rows` (all when None), from the raw policy."""
    legal = sample.legal(net.format)
    out = []
    for chunk, logits, _ in forward(net, sample, rows=rows, batch_size=batch_size):
        out.append(legal_argmax(logits, [legal[i] for i in chunk]))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
