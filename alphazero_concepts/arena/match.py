"""One pairing: all games between two players played concurrently, with PGNs and a JSON-serialisable record.

Game g starts from opening ``g // 2`` of the list (cycled) and player A has White in even games, Black in odd
ones, so every opening is played once with each colour. All games advance together in the batched game driver
(`search.games`): at each step player A is asked for moves in every live game where it is to move (one call, so
our MCTS batches its network calls across games), then player B likewise. A game ends by the rules —
checkmate, stalemate, insufficient material, threefold repetition (the position occurs three times; claimed at
once), the fifty-move rule (claimed at once) — or, at `max_plies` plies (opening included), by adjudication as a
draw, recorded as such.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import chess
import chess.pgn

from alphazero_concepts.arena.players import Player
from alphazero_concepts.nn.checkpoints import atomic_write_bytes
from alphazero_concepts.search.games import play_batched

Opening = tuple[str, chess.Board]
MatchProgress = Callable[[int, int], None]  # (games finished, games in the match)

ADJUDICATED = "adjudicated_max_plies"


@dataclass
class GameResult:
    """One finished game: who had which colour, the opening, the result and why it ended."""

    index: int
    white: str
    black: str
    opening: str
    opening_plies: int
    result: str  # "1-0", "0-1", "1/2-1/2"
    termination: str  # checkmate, stalemate, insufficient_material, threefold_repetition, fifty_moves, ADJUDICATED
    plies: int
    moves: list[str]  # UCI, from the standard starting position (opening moves included)

    def score_for(self, player: str) -> float:
        """1, ½ or 0 for `player` (who must have played this game)."""
        if player not in (self.white, self.black):
            raise ValueError(f"{player!r} did not play game {self.index}")
        if self.result == "1/2-1/2":
            return 0.5
        return 1.0 if (self.result == "1-0") == (player == self.white) else 0.0


@dataclass
class MatchResult:
    """Results of one pairing from player A's view, with both budgets. `to_dict`/`from_dict` round-trip JSON."""

    a: str
    b: str
    budget_a: dict
    budget_b: dict
    wins: int
    draws: int
    losses: int
    max_plies: int
    wall_s: float = 0.0
    pgn: str | None = None
    stats_a: dict = field(default_factory=dict)  # work done by A in this match (Player.stats)
    stats_b: dict = field(default_factory=dict)
    games: list[GameResult] = field(default_factory=list)

    @property
    def n_games(self) -> int:
        return self.wins + self.draws + self.losses

    @property
    def score(self) -> float:
        """A's score in [0, 1]: (wins + draws / 2) / games."""
        return (self.wins + 0.5 * self.draws) / self.n_games if self.n_games else float("nan")

    @property
    def adjudicated(self) -> int:
        return sum(g.termination == ADJUDICATED for g in self.games)

    def flipped(self) -> MatchResult:
        """The same pairing from player B's view (wins and losses, budgets and stats swapped; games unchanged)."""
        return MatchResult(a=self.b, b=self.a, budget_a=self.budget_b, budget_b=self.budget_a, wins=self.losses,
                           draws=self.draws, losses=self.wins, max_plies=self.max_plies, wall_s=self.wall_s,
                           pgn=self.pgn, stats_a=self.stats_b, stats_b=self.stats_a, games=self.games)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(n_games=self.n_games, score=self.score, adjudicated=self.adjudicated)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> MatchResult:
        keep = {k: v for k, v in data.items() if k not in ("n_games", "score", "adjudicated", "games")}
        return cls(**keep, games=[GameResult(**g) for g in data.get("games", [])])


def _termination(board: chess.Board, max_plies: int) -> tuple[str, str] | None:
    """(result, termination) when the game is over by the rules or the ply cap; None while it goes on."""
    outcome = board.outcome(claim_draw=False)
    if outcome is not None:
        return outcome.result(), outcome.termination.name.lower()
    if board.is_repetition(3):
        return "1/2-1/2", "threefold_repetition"
    if board.halfmove_clock >= 100:
        return "1/2-1/2", "fifty_moves"
    if board.ply() >= max_plies:
        return "1/2-1/2", ADJUDICATED
    return None


def _pgn_text(game: GameResult, board: chess.Board, budgets: dict[str, str], event: str, date: str) -> str:
    pgn = chess.pgn.Game.from_board(board)
    headers = pgn.headers
    headers["Event"] = event
    headers["Site"] = "alphazero-concepts arena"
    headers["Date"] = date
    headers["Round"] = str(game.index + 1)
    headers["White"] = game.white
    headers["Black"] = game.black
    headers["Result"] = game.result
    headers["WhiteBudget"] = budgets[game.white]
    headers["BlackBudget"] = budgets[game.black]
    headers["ECO"] = game.opening
    headers["Opening"] = game.opening
    headers["OpeningPlies"] = str(game.opening_plies)
    headers["PlyCount"] = str(game.plies)
    headers["Termination"] = "adjudication" if game.termination == ADJUDICATED else "normal"
    headers["TerminationDetail"] = game.termination
    exporter = chess.pgn.StringExporter(headers=True, variations=False, comments=False)
    return pgn.accept(exporter) + "\n\n"


def play_match(a: Player, b: Player, games: int, openings: Sequence[Opening], *, max_plies: int = 400,
               pgn_path: str | Path | None = None, event: str = "azc arena", progress: MatchProgress | None = None,
               done: Mapping[int, GameResult] | None = None,
               on_game: Callable[[GameResult], None] | None = None) -> MatchResult:
    """Play `games` games between `a` and `b` concurrently (see the module docstring) and return A's results.

    `openings` are (name, board after the line) with the line in the board's move stack; game g uses
    ``openings[(g // 2) % len(openings)]``. The PGN of every game (headers: players, budgets, opening, result,
    termination) is written atomically to `pgn_path` when given. A move a player returns that is illegal raises
    ValueError naming the player and position.

    Resuming a killed match: `on_game` is called with each game as soon as it ends (store it), and `done` hands
    such games back by index; they are not replayed (ValueError when one does not fit this match's schedule).
    """
    if games < 1:
        raise ValueError(f"games must be ≥ 1, got {games}")
    if not openings:
        raise ValueError("no openings given")
    if a.name == b.name:
        raise ValueError(f"both players are named {a.name!r}; names identify players in the results")
    start = time.time()
    a.reset_stats()
    b.reset_stats()
    boards: list[chess.Board] = []
    white: list[Player] = []
    names: list[str] = []
    for g in range(games):
        name, opening = openings[(g // 2) % len(openings)]
        if _termination(opening, max_plies) is not None:
            raise ValueError(f"opening {name!r} is already over (or at the ply cap): {opening.fen()}")
        boards.append(opening.copy(stack=True))
        white.append(a if g % 2 == 0 else b)
        names.append(name)
    opening_plies = [len(board.move_stack) for board in boards]

    def record(g: int, end: tuple[str, str]) -> GameResult:
        return GameResult(index=g, white=white[g].name, black=(b if white[g] is a else a).name, opening=names[g],
                          opening_plies=opening_plies[g], result=end[0], termination=end[1],
                          plies=len(boards[g].move_stack), moves=[m.uci() for m in boards[g].move_stack])

    finished: dict[int, GameResult] = {}
    for g, game in (done or {}).items():
        boards[g] = _replay(game, boards[g], g, record(g, ("*", "")))
        finished[g] = game
    if progress is not None and finished:
        progress(len(finished), games)

    def to_move(g: int) -> Player:
        return a if (white[g] is a) == (boards[g].turn == chess.WHITE) else b

    def play(g: int, move: chess.Move) -> None:
        if move not in boards[g].legal_moves:
            raise ValueError(f"{to_move(g).name} played an illegal move {move} in game {g}: {boards[g].fen()}")
        boards[g].push(move)

    def on_end(g: int, end: tuple[str, str] | None) -> None:
        assert end is not None  # players always move
        finished[g] = record(g, end)
        if on_game is not None:
            on_game(finished[g])
        if progress is not None:
            progress(len(finished), games)

    def chooser(player: Player) -> Callable[[list[int]], list[chess.Move]]:
        return lambda gs: player.choose_moves([boards[g] for g in gs])

    play_batched([g for g in range(games) if g not in finished], [chooser(a), chooser(b)], play=play,
                 end=lambda g: _termination(boards[g], max_plies), on_end=on_end,
                 mover=lambda g: 0 if to_move(g) is a else 1)

    budgets = {a.name: a.budget_text(), b.name: b.budget_text()}
    results = [finished[g] for g in range(games)]
    scores = [game.score_for(a.name) for game in results]
    date = datetime.date.today().strftime("%Y.%m.%d")
    if pgn_path is not None:
        text = "".join(_pgn_text(game, board, budgets, event, date) for game, board in zip(results, boards,
                                                                                             strict=True))
        atomic_write_bytes(Path(pgn_path), text.encode())
    return MatchResult(a=a.name, b=b.name, budget_a=dict(a.budget), budget_b=dict(b.budget),
                       wins=scores.count(1.0), draws=scores.count(0.5), losses=scores.count(0.0), max_plies=max_plies,
                       wall_s=time.time() - start, pgn=str(pgn_path) if pgn_path is not None else None,
                       stats_a=a.stats(), stats_b=b.stats(), games=results)


def _replay(game: GameResult, opening: chess.Board, index: int, expected: GameResult) -> chess.Board:
    """The final board of a stored game, checked against this match's schedule (players, opening, moves)."""
    if (game.index, game.white, game.black, game.opening) != (index, expected.white, expected.black,
                                                               expected.opening):
        raise ValueError(f"stored game {index} ({game.white}–{game.black}, {game.opening}) does not fit this match "
                         f"({expected.white}–{expected.black}, {expected.opening})")
    board = opening.root()
    for uci in game.moves:
        board.push_uci(uci)
    if game.moves[: len(opening.move_stack)] != expected.moves:
        raise ValueError(f"stored game {index} does not start with its opening {game.opening}")
    return board
