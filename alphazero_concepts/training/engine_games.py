"""Make engine-labelled games: engine self-play (`azc data engine-games`) and engine labels for games a network
played (`azc data label-games`, DAgger-style: the positions the network actually reaches). Never human games.

Both write the format owned by `training.engine_data` (one gzip member a game). Game i of a self-play file uses
the random seed "{seed}-{i}", so a file can be extended or re-made exactly (up to the engine's node-count
determinism with one thread). Several workers (one engine process each) play different game indices at once; a
finished game is appended as soon as it is done, so a kill loses at most the games in hand, and a re-run plays
only the indices still missing.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import chess
import chess.engine

from alphazero_concepts.chess.positions import ReadReport
from alphazero_concepts.engines import locate_stockfish
from alphazero_concepts.training.engine_data import append_game, read_engine_games, score_cp


class EngineMissing(RuntimeError):
    """No Stockfish binary: the message says how to install one or point at it."""


@dataclass(frozen=True)
class EngineGamesConfig:
    """How engine self-play games are played and labelled (defaults: those of `../shared/data/engine/`)."""

    nodes: int = 2000
    multipv: int = 4
    seed: int = 0
    random_plies: int = 12
    open_window: int = 60
    late_window: int = 25
    explore: float = 0.15
    max_plies: int = 300
    hash_mb: int = 32
    # share of later plies where a uniformly random legal move is played instead (still labelled by the engine):
    # games with blunders reach the material imbalances that engine play never shows (a queen up in the
    # middlegame), which the value head must also judge
    blunder: float = 0.0
    # share of games played as odds games: at a seeded ply in `odds_plies` one piece (not a king or pawn) of a
    # seeded side is taken off and the game is recorded from there (`start_fen`, no earlier history). Engine
    # self-play never shows an opening a queen or a rook down; the value head must still see the material.
    odds: float = 0.0
    odds_plies: tuple[int, int] = (4, 40)

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.multipv < 1 or self.max_plies < 1:
            raise ValueError("nodes, multipv and max_plies must be ≥ 1")
        for name in ("explore", "blunder", "odds"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.odds_plies[0] <= self.odds_plies[1]:
            raise ValueError(f"odds_plies must be an increasing pair of plies ≥ 0, got {self.odds_plies}")


def open_engine(stockfish: str | None = None, hash_mb: int = 32) -> chess.engine.SimpleEngine:
    """A one-thread Stockfish with WDL output; EngineMissing (with advice) when there is none."""
    path = locate_stockfish(stockfish)
    if path is None:
        where = f"{stockfish!r} is not an executable" if stockfish else "no `stockfish` on PATH or in /usr/games"
        raise EngineMissing(f"Stockfish not found ({where}): install it (`apt-get install stockfish`) or pass "
                            "--stockfish PATH")
    engine = chess.engine.SimpleEngine.popen_uci(path)
    engine.configure({"Threads": 1, "Hash": hash_mb, "UCI_ShowWDL": True})
    return engine


def label_position(engine: chess.engine.SimpleEngine, board: chess.Board, nodes: int, multipv: int) -> dict:
    """`{"pv": [[uci, score], …], "wdl": [w, d, l] | None}` of `board` from one MultiPV search (side to move's view)."""
    infos = engine.analyse(board, chess.engine.Limit(nodes=nodes), multipv=multipv, info=chess.engine.INFO_ALL)
    infos = [i for i in infos if i.get("pv")]
    pov = board.turn
    pvs = []
    for info in infos:
        s = info["score"].pov(pov)
        pvs.append([info["pv"][0].uci(), {"mate": s.mate()} if s.is_mate() else {"cp": s.score()}])
    wdl = infos[0].get("wdl") if infos else None
    return {"pv": pvs, "wdl": list(wdl.pov(pov)) if wdl is not None else None}


def choose_move(label: dict, ply: int, rng: random.Random, config: EngineGamesConfig) -> str:
    """The move self-play plays from a labelled position (opening diversity, then mostly the best move)."""
    pvs = label["pv"]
    best = score_cp(pvs[0][1])
    if ply < config.random_plies:
        return rng.choice([m for m, s in pvs if best - score_cp(s) <= config.open_window])
    if len(pvs) > 1 and best - score_cp(pvs[1][1]) <= config.late_window and rng.random() < config.explore:
        return pvs[1][0]
    return pvs[0][0]


def play_game(engine: chess.engine.SimpleEngine, index: int, config: EngineGamesConfig) -> dict:
    """Engine self-play game `index` from the initial position (or, for an odds game, from the position where a
    piece was taken off), every recorded position labelled."""
    rng = random.Random(f"{config.seed}-{index}")
    board = chess.Board()
    plies: list[dict] = []
    odds_at = rng.randint(*config.odds_plies) if config.odds and rng.random() < config.odds else None
    start: chess.Board | None = None
    while not board.is_game_over(claim_draw=True) and board.ply() < config.max_plies:
        if odds_at is not None and start is None and board.ply() >= odds_at:
            board, plies = remove_piece(board, rng), []
            start = board.copy()
            if board.is_game_over(claim_draw=True):
                break
        label = label_position(engine, board, config.nodes, config.multipv)
        move = choose_move(label, board.ply(), rng, config)
        if config.blunder and board.ply() >= config.random_plies and rng.random() < config.blunder:
            move = rng.choice(sorted(m.uci() for m in board.legal_moves))
        plies.append({**label, "move": move})
        board.push_uci(move)
    record = _game_record(index, board, plies, config)
    if start is not None:
        record["start_fen"] = start.fen()
    return record


def remove_piece(board: chess.Board, rng: random.Random) -> chess.Board:
    """`board` without one seeded piece (queen, rook, bishop or knight) of a seeded side, as a bare position.

    The side is drawn first, then the piece type among those it has (queens and rooks twice as likely as minor
    pieces); a removal that leaves an illegal position (the other side in check) is redrawn, and a board where
    nothing can be removed comes back unchanged (without its move stack).
    """
    out = chess.Board(board.fen())
    for _ in range(16):
        colour = rng.random() < 0.5
        weights = {chess.QUEEN: 2, chess.ROOK: 2, chess.BISHOP: 1, chess.KNIGHT: 1}
        have = [(t, w) for t, w in weights.items() if out.pieces(t, colour)]
        if not have:
            continue
        kind = rng.choices([t for t, _ in have], weights=[w for _, w in have])[0]
        square = rng.choice(sorted(out.pieces(kind, colour)))
        trial = out.copy()
        trial.remove_piece_at(square)
        trial.castling_rights = trial.clean_castling_rights()
        if trial.is_valid():
            return trial
    return out


def label_moves(engine: chess.engine.SimpleEngine, index: int, start: chess.Board, moves: Iterable[chess.Move],
                config: EngineGamesConfig, result: str | None = None) -> dict:
    """Engine labels for every position of a game someone else played (the moves are kept as played)."""
    board = start.copy(stack=False)
    plies = []
    for move in moves:
        plies.append({**label_position(engine, board, config.nodes, config.multipv), "move": move.uci()})
        board.push(move)
    record = _game_record(index, board, plies, config, result)
    if start.fen() != chess.STARTING_FEN:
        record["start_fen"] = start.fen()
    return record


def _game_record(index: int, board: chess.Board, plies: list[dict], config: EngineGamesConfig,
                 result: str | None = None) -> dict:
    outcome = board.outcome(claim_draw=True)
    if result not in ("1-0", "0-1", "1/2-1/2"):
        result = outcome.result() if outcome else "1/2-1/2"
    return {"game": index, "seed": config.seed, "nodes": config.nodes, "multipv": config.multipv, "result": result,
            "termination": outcome.termination.name.lower() if outcome else "max_plies", "plies": plies}


def finished_games(path: Path) -> set[int]:
    """Indices of the complete games already in `path` (a torn last game from a kill does not count)."""
    if not path.is_file():
        return set()
    return {int(g["game"]) for _, g in read_engine_games(path, ReadReport(source=str(path)))
            if isinstance(g.get("game"), int)}


def repair(path: Path) -> int:
    """Rewrite `path` without a torn last record (a kill mid-append); returns the number of games kept."""
    if not path.is_file():
        return 0
    report = ReadReport(source=str(path))
    games = [g for _, g in read_engine_games(path, report)]
    if report.skipped:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.unlink(missing_ok=True)
        for g in games:
            append_game(tmp, g)
        tmp.replace(path)
    return len(games)


def _play_one(args: tuple[int, dict, str | None]) -> dict:
    index, config_dict, stockfish = args
    global _ENGINE  # one engine per worker process, opened on its first game
    config = EngineGamesConfig(**config_dict)
    if _ENGINE is None:
        _ENGINE = open_engine(stockfish, config.hash_mb)
    return play_game(_ENGINE, index, config)


_ENGINE: chess.engine.SimpleEngine | None = None


def make_engine_games(out: str | Path, games: int, config: EngineGamesConfig, *, workers: int = 1,
                      stockfish: str | None = None,
                      on_game: Callable[[dict, int], None] | None = None) -> int:
    """Play until `out` holds games 0 … games−1 (resuming: missing indices only); returns games added.

    `on_game(game, done)` is called after each appended game. `workers` > 1 plays games in that many processes,
    one engine each.
    """
    out = Path(out)
    if locate_stockfish(stockfish) is None:
        open_engine(stockfish)  # raises EngineMissing with advice
    out.parent.mkdir(parents=True, exist_ok=True)
    repair(out)
    finished = finished_games(out)
    todo = [i for i in range(games) if i not in finished]
    done = games - len(todo)
    added = 0
    jobs = [(i, asdict(config), stockfish) for i in todo]
    if workers <= 1:
        games_iter: Iterable[dict] = map(_play_one, jobs)
        try:
            for game in games_iter:
                append_game(out, game)
                added += 1
                if on_game:
                    on_game(game, done + added)
        finally:
            _close_engine()
        return added
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for game in pool.imap_unordered(_play_one, jobs):
            append_game(out, game)
            added += 1
            if on_game:
                on_game(game, done + added)
    return added


def _close_engine() -> None:
    global _ENGINE
    if _ENGINE is not None:
        _ENGINE.quit()
        _ENGINE = None
