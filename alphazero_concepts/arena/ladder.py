"""An Elo ladder over a checkpoint series: pairings, Stockfish matches, fit, `ladder.json` and a plot; resumable.

Plan (all pairings played with `play_match`, `games` games each, `simulations` per move for our side):

1. adjacent checkpoints in series order (or every pair with `all_pairs`), then the extra `pairs` ("A:B": two
   checkpoints, or a checkpoint and a configured Stockfish or Maia level);
2. after a first fit, the first checkpoint against the strongest (when not already paired), then each of
   `stockfish_vs` (default: the strongest by that fit) against every Stockfish level.

Every finished pairing is written at once (atomically) to ``results.json`` in the output directory under a key
naming both players, their budgets, the number of games and the ply cap; a killed ladder started again with the
same settings skips those pairings. A pairing is found in either order (``A vs B`` is ``B vs A`` seen from the
other side), and `merge` adds the finished pairings of other arena folders (parts of one ladder played apart, or
the same players under other budgets) to this one's ``results.json``. Within a pairing, each finished game is
appended to ``partial/A_vs_B.jsonl`` at once, so a restarted pairing replays only the games that had not ended.

The final fit (see `elo`) is anchored at the first checkpoint = 0, and separately, when Stockfish played at
UCI_Elo levels, with each level fixed at its UCI_Elo. ``ladder.json`` holds at least ``checkpoints: [{name, elo,
elo_ci, games, value_mse}]`` in series order, ``vs_stockfish: [{checkpoint, uci_elo, games, score, sims}]`` and
``vs_maia: [{checkpoint, maia, games, score, sims, maia_sims}]`` (Maia levels, human yardsticks, searching with
`maia_simulations`, by default as many as ours); PGNs go to ``games/`` and the plot to ``ladder.png``. Each
``vs_stockfish``/``vs_maia`` row says whether it entered the fit (``fitted``): finished pairings of a ladder
checkpoint against Stockfish or Maia outside the plan (another budget, e.g. 800 simulations, or a merged part) are
listed with ``fitted: false``.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import chess

from alphazero_concepts.arena.elo import EloFit, PairResult, bootstrap_elo, fit_elo
from alphazero_concepts.arena.match import GameResult, MatchResult, play_match
from alphazero_concepts.arena.players import MCTSPlayer, Player, StockfishPlayer, find_stockfish, stockfish_name
from alphazero_concepts.engines import locate_maia_dir
from alphazero_concepts.nn.checkpoints import Series, atomic_write_bytes
from alphazero_concepts.nn.network import DictConfig, check_precision
from alphazero_concepts.plotting import pyplot, save_figure
from alphazero_concepts.search.roots import bundled_openings

LADDER_SCHEMA = "alphazero-concepts/ladder/1"
RESULTS_SCHEMA = "alphazero-concepts/arena-results/1"
LadderProgress = Callable[[str, int, int], None]  # (pairing label, games finished, games in the pairing)


@dataclass(frozen=True)
class LadderConfig(DictConfig):
    """What the ladder plays and under which budgets (saved in ``ladder.json`` as ``settings``)."""

    games: int = 40  # games per pairing (each opening with both colours)
    simulations: int = 100  # MCTS simulations per move for every checkpoint
    max_plies: int = 400  # adjudication cap (plies, opening included) → draw
    checkpoints: tuple[str, ...] = ()  # subset of the series (kept in series order); empty = all
    all_pairs: bool = False
    first_vs_strongest: bool = True
    stockfish_elo: tuple[int, ...] = ()  # UCI_Elo levels (UCI_LimitStrength), 1350–2850 for Stockfish 15.1
    stockfish_skill: tuple[int, ...] = ()  # Skill Level 0–20
    stockfish_movetime: float | None = 0.1  # seconds per move (ignored when stockfish_nodes is set)
    stockfish_nodes: int | None = None
    stockfish_path: str | None = None
    stockfish_vs: tuple[str, ...] = ()  # checkpoints that play Stockfish (and Maia); empty = the strongest
    maia: tuple[str, ...] = ()  # human yardsticks, e.g. ("maia-1100", "maia-1900"): lc0 weights in `maia_dir`
    maia_simulations: int | None = None  # Maia's simulations a move (default: `simulations`, same as ours)
    maia_dir: str | None = None  # folder of maia-<rating>.pb.gz (default: `engines.locate_maia_dir`)
    pairs: tuple[str, ...] = ()  # extra pairings "A:B" in the fit (checkpoints, Stockfish or Maia level names)
    merge: tuple[str, ...] = ()  # other arena folders (or their results.json) whose finished pairings are reused
    ci: str = "fisher"  # "fisher" (Hessian) or "bootstrap"
    sts_suite: str | None = None  # STS EPD: score every checkpoint and add the totals to ladder.json
    sts_simulations: int | None = None  # default: `simulations`
    device: str = "cpu"
    precision: str = "fp32"  # "bf16": every network (ours and Maia) under bfloat16 autocast; part of pairing keys

    def __post_init__(self) -> None:
        check_precision(self.precision)
        for name in ("checkpoints", "stockfish_elo", "stockfish_skill", "stockfish_vs", "maia", "pairs", "merge"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.games < 1 or self.simulations < 0 or self.max_plies < 1:
            raise ValueError("games and max_plies must be ≥ 1 and simulations ≥ 0")
        if self.ci not in ("fisher", "bootstrap"):
            raise ValueError(f"ci must be 'fisher' or 'bootstrap', got {self.ci!r}")
        if self.stockfish_nodes is None and self.stockfish_movetime is None and self.stockfish_levels():
            raise ValueError("Stockfish needs a budget: stockfish_movetime or stockfish_nodes")
        for pair in self.pairs:
            a, sep, b = pair.partition(":")
            if not sep or not a or not b or a == b:
                raise ValueError(f"pairs take two different players as 'A:B', got {pair!r}")

    def extra_pairs(self) -> list[tuple[str, str]]:
        """`pairs` as (a, b) tuples."""
        return [(a, b) for a, _, b in (p.partition(":") for p in self.pairs)]

    def engine_names(self) -> list[str]:
        """Player names of the configured Stockfish and Maia levels."""
        return [stockfish_name(e, s) for e, s in self.stockfish_levels()] + list(self.maia)

    def maia_path(self, name: str) -> Path:
        """The weight file of Maia level `name` ("maia-1900"); ValueError naming where it was looked for."""
        if not name.startswith("maia-") or not name[5:].isdigit():
            raise ValueError(f"Maia levels are named like 'maia-1900', got {name!r}")
        directory = Path(self.maia_dir) if self.maia_dir else locate_maia_dir() or Path("maia")
        path = directory / f"{name}.pb.gz"
        if not path.is_file():
            raise ValueError(f"{path}: no Maia weights for {name} (pass --maia-dir, the folder of maia-*.pb.gz)")
        return path

    def stockfish_levels(self) -> list[tuple[int | None, int | None]]:
        """(uci_elo, skill_level) of every Stockfish level to play."""
        return [(e, None) for e in self.stockfish_elo] + [(None, s) for s in self.stockfish_skill]

    def stockfish_budget(self) -> dict[str, float | int | None]:
        if self.stockfish_nodes is not None:
            return {"movetime": None, "nodes": self.stockfish_nodes}
        return {"movetime": self.stockfish_movetime, "nodes": None}


def _spec(name: str, config: LadderConfig) -> str:
    """A player with its budget, as used in pairing keys."""
    if name.startswith("stockfish-"):
        budget = config.stockfish_budget()
        return f"{name}@" + (f"nodes={budget['nodes']}" if budget["nodes"] is not None else
                             f"movetime={budget['movetime']:g}")
    tail = precision_tag(config.precision, ",")
    if name.startswith("maia-") and config.maia_simulations is not None:
        return f"{name}@sims={config.maia_simulations}{tail}"
    return f"{name}@sims={config.simulations}{tail}"


def precision_tag(precision: str, sep: str) -> str:
    """What a non-fp32 precision adds to pairing keys, game files and output folders ("" for fp32)."""
    return "" if precision == "fp32" else f"{sep}{precision}"


def _architecture(series: Series) -> str | None:
    """"blocks x channels" of a one-architecture series (None when its manifest has no config)."""
    return f"{series.config.blocks}x{series.config.channels}" if series.config is not None else None


def pairing_key(a: str, b: str, config: LadderConfig) -> str:
    """Identifies a pairing's result in ``results.json``: players, budgets, games and ply cap."""
    return f"{_spec(a, config)} vs {_spec(b, config)} games={config.games} max_plies={config.max_plies}"


def load_results(path: Path) -> dict[str, MatchResult]:
    """Finished pairings stored at `path` (empty when the file does not exist)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    return {key: MatchResult.from_dict(rec) for key, rec in data.get("pairings", {}).items()}


def merge_results(results: dict[str, MatchResult], sources: Sequence[str | Path], out: Path) -> int:
    """Add the finished pairings of other arena folders (or results.json files) to `results`; returns how many.

    A key already in `results` keeps its own result; PGN paths are rewritten relative to `out`.
    """
    added = 0
    for source in sources:
        path = Path(source)
        path = path / "results.json" if path.is_dir() else path
        if not path.is_file():
            raise ValueError(f"{source}: no arena results to merge (expected {path})")
        for key, result in load_results(path).items():
            if key in results:
                continue
            if result.pgn is not None:
                result.pgn = os.path.relpath(path.parent / result.pgn, out)
            results[key] = result
            added += 1
    return added


def is_engine(name: str) -> bool:
    """Stockfish and Maia players (not checkpoints of the series)."""
    return name.startswith(("stockfish-", "maia-"))


def save_results(path: Path, results: dict[str, MatchResult], series: str) -> None:
    data = {"schema": RESULTS_SCHEMA, "series": series,
            "pairings": {key: r.to_dict() for key, r in results.items()}}
    atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode())


@contextlib.contextmanager
def open_partial(path: Path, key: str) -> Iterator[tuple[dict[int, GameResult], Callable[[GameResult], None]]]:
    """Games of an unfinished pairing stored at `path` (JSON lines tagged with the pairing key), and an appender.

    Each finished game is appended and flushed at once, so a ladder killed in the middle of a long pairing keeps
    the games that ended; a torn last line (killed while writing) and lines of another key are ignored.
    """
    done: dict[int, GameResult] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
                if rec.get("key") == key:
                    game = GameResult(**rec["game"])
                    done[game.index] = game
            except (json.JSONDecodeError, TypeError, KeyError):
                continue
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:

        def store(game: GameResult) -> None:
            fh.write(json.dumps({"key": key, "game": asdict(game)}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

        yield done, store


def pair_results(matches: Sequence[MatchResult]) -> list[PairResult]:
    return [PairResult(m.a, m.b, m.wins, m.draws, m.losses) for m in matches]


class Ladder:
    """Runs the ladder of `series` into `out` (see the module docstring)."""

    def __init__(self, series: Series, out: str | Path, config: LadderConfig | None = None,
                 openings: Sequence[tuple[str, chess.Board]] | None = None) -> None:
        self.series = series
        self.out = Path(out)
        self.config = config or LadderConfig()
        self.openings = list(openings) if openings is not None else bundled_openings()
        wanted = list(self.config.checkpoints) or series.names
        unknown = [n for n in wanted if n not in series.names]
        if unknown:
            raise ValueError(f"{series.directory}: no checkpoint(s) {unknown} (have {', '.join(series.names)})")
        self.names = [n for n in series.names if n in wanted]
        clash = [n for n in self.names if n.startswith("stockfish-")]
        if clash:
            raise ValueError(f"checkpoint names {clash} clash with Stockfish player names (stockfish-…)")
        for n in self.config.stockfish_vs:
            if n not in self.names:
                raise ValueError(f"stockfish_vs names {n!r}, which is not among the ladder's checkpoints")
        if len(self.names) < 2 and not self.config.stockfish_levels() and not self.config.maia:
            raise ValueError("a ladder needs at least two checkpoints, a Stockfish level or a Maia level")
        for m in self.config.maia:
            self.config.maia_path(m)  # fail before any game
        players = {*self.names, *self.config.engine_names()}
        for a, b in self.config.extra_pairs():
            if a not in players or b not in players or (is_engine(a) and is_engine(b)):
                raise ValueError(f"pair {a}:{b}: each pairing needs a ladder checkpoint and a checkpoint or a "
                                 f"configured Stockfish/Maia level (have {', '.join(sorted(players))})")
        if self.config.games > 2 * len(self.openings) and len(self.names) > 1:
            warnings.warn(f"{self.config.games} games per pairing but only {len(self.openings)} openings: games "
                          "between two checkpoints are deterministic, so an opening played twice with one colour "
                          "repeats the same game", UserWarning, stacklevel=2)
        self.results_path = self.out / "results.json"
        self.results = load_results(self.results_path)
        self.merged = merge_results(self.results, self.config.merge, self.out)  # pairings taken from elsewhere
        self._players: dict[str, Player] = {}
        self.played: list[str] = []  # keys of pairings played by this run (the rest came from results.json)

    # -- players ---------------------------------------------------------------------------------------------
    def _player(self, name: str) -> Player:
        if name not in self._players:
            cfg = self.config
            if name.startswith("maia-"):
                from alphazero_concepts.nn.lc0 import load_lc0

                net, _ = load_lc0(cfg.maia_path(name), cfg.device)
                sims = cfg.simulations if cfg.maia_simulations is None else cfg.maia_simulations
                self._players[name] = MCTSPlayer(net, sims, name=name, precision=cfg.precision)
            elif name.startswith("stockfish-"):
                elo, skill = next((e, s) for e, s in cfg.stockfish_levels() if stockfish_name(e, s) == name)
                budget = cfg.stockfish_budget()
                self._players[name] = StockfishPlayer(elo, skill, movetime=budget["movetime"], nodes=budget["nodes"],
                                                      path=cfg.stockfish_path, name=name)
            else:
                net, _ = self.series.load(name, cfg.device)
                self._players[name] = MCTSPlayer(net, cfg.simulations, name=name, precision=cfg.precision)
        return self._players[name]

    def close(self) -> None:
        for player in self._players.values():
            player.close()
        self._players.clear()

    # -- playing ---------------------------------------------------------------------------------------------
    def result(self, a: str, b: str) -> MatchResult | None:
        """The finished pairing of `a` and `b` under this ladder's budgets, from `a`'s view, stored in either order."""
        found = self.results.get(pairing_key(a, b, self.config))
        if found is not None:
            return found
        other = self.results.get(pairing_key(b, a, self.config))
        return other.flipped() if other is not None else None

    def _play(self, pairs: Sequence[tuple[str, str]], progress: LadderProgress | None) -> None:
        for a, b in pairs:
            key = pairing_key(a, b, self.config)
            if self.result(a, b) is not None:
                continue
            label = f"{a} vs {b}"
            if progress is not None:
                progress(label, 0, self.config.games)
            stem = f"{a}_vs_{b}{precision_tag(self.config.precision, '_')}"
            pgn = self.out / "games" / f"{stem}.pgn"
            partial = self.out / "partial" / f"{stem}.jsonl"
            report = (lambda done, total, lb=label: progress(lb, done, total)) if progress is not None else None
            with open_partial(partial, key) as (done, store):
                result = play_match(self._player(a), self._player(b), self.config.games, self.openings,
                                    max_plies=self.config.max_plies, pgn_path=pgn,
                                    event=f"azc arena {self.series.name}", progress=report, done=done,
                                    on_game=store)
            result.pgn = str(pgn.relative_to(self.out))
            self.results[key] = result
            self.played.append(key)
            save_results(self.results_path, self.results, self.series.name)
            partial.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                partial.parent.rmdir()  # only when no other pairing left games there

    def _fit(self, pairs: Sequence[tuple[str, str]], anchors: dict[str, float]) -> EloFit:
        stored = {(a, b): self.result(a, b) for a, b in pairs}
        missing = [f"{a} vs {b}" for (a, b), r in stored.items() if r is None]
        if missing:  # `_play` plays every planned pairing first; a gap means a bug or a hand-edited results file
            raise RuntimeError(f"{self.results_path}: no result for {', '.join(missing)}; run the ladder to play them")
        found = pair_results([r for r in stored.values() if r is not None])
        if self.config.ci == "bootstrap":
            return bootstrap_elo(found, anchors)
        return fit_elo(found, anchors)

    def plan(self) -> list[tuple[str, str]]:
        """Phase-1 pairings: adjacent checkpoints in series order (every pair with `all_pairs`), then `pairs`."""
        planned = list(itertools.combinations(self.names, 2)) if self.config.all_pairs else \
            list(itertools.pairwise(self.names))
        for a, b in self.config.extra_pairs():
            if (a, b) not in planned and (b, a) not in planned:
                planned.append((a, b))
        return planned

    def run(self, progress: LadderProgress | None = None) -> dict:
        """Play what is missing, fit, write ``ladder.json`` and ``ladder.png``; returns the ladder dict."""
        cfg = self.config
        if cfg.stockfish_levels():
            find_stockfish(cfg.stockfish_path)  # fail before hours of games, not after
        self.out.mkdir(parents=True, exist_ok=True)
        if self.merged:
            save_results(self.results_path, self.results, self.series.name)
        pairs = self.plan()
        levels = [stockfish_name(e, s) for e, s in cfg.stockfish_levels()]
        try:
            self._play(pairs, progress)
            first = self.names[0]
            strongest = first
            if pairs:
                fit = self._fit(pairs, {first: 0.0})
                strongest = max(self.names, key=lambda n: fit.ratings[n])
                if cfg.first_vs_strongest and strongest != first and (first, strongest) not in pairs \
                        and (strongest, first) not in pairs:
                    pairs.append((first, strongest))
                    self._play(pairs[-1:], progress)
            vs = list(cfg.stockfish_vs) or [strongest]
            sf_pairs = [(ck, lvl) for ck in vs for lvl in levels]
            self._play(sf_pairs, progress)
            maia_pairs = [(ck, m) for ck in vs for m in cfg.maia]
            self._play(maia_pairs, progress)
        finally:
            self.close()
        ladder = self._ladder(pairs, sf_pairs, strongest, maia_pairs)
        atomic_write_bytes(self.out / "ladder.json", (json.dumps(ladder, indent=2) + "\n").encode())
        plot_ladder(ladder, self.out / "ladder.png")
        return ladder

    # -- results ---------------------------------------------------------------------------------------------
    def _ladder(self, pairs: list[tuple[str, str]], sf_pairs: list[tuple[str, str]], planned_strongest: str,
                maia_pairs: list[tuple[str, str]] = ()) -> dict:  # type: ignore[assignment]
        cfg = self.config
        fitted = [*pairs, *sf_pairs, *maia_pairs]
        fit = self._fit(fitted, {self.names[0]: 0.0})
        sf_scale = None
        sf_anchor = {stockfish_name(e, None): float(e) for e in cfg.stockfish_elo}
        anchored = {p: sf_anchor[p] for pair in fitted for p in pair if p in sf_anchor}
        if anchored:
            sf_fit = self._fit(fitted, anchored)
            sf_scale = {**sf_fit.to_dict(), "checkpoints": [
                {"name": n, "elo": sf_fit.ratings[n], "elo_ci": list(sf_fit.ci[n])}
                for n in self.names if n in sf_fit.ratings]}
            del sf_scale["players"]
        rated = [n for n in self.names if n in fit.ratings]
        strongest = max(rated, key=lambda n: fit.ratings[n])
        checkpoints = []
        for n in self.names:
            meta = self.series.meta(n)
            row = {"name": n, "elo": fit.ratings.get(n), "elo_ci": list(fit.ci[n]) if n in fit.ci else None,
                   "games": int(fit.games.get(n, 0)), "step": meta.step, "stage": meta.stage,
                   "positions_seen": meta.positions_seen, "value_mse": meta.extra.get("value_mse"),
                   "architecture": meta.extra.get("architecture") or _architecture(self.series)}
            checkpoints.append(row)
        levels = []
        for e, s in cfg.stockfish_levels():
            lvl = stockfish_name(e, s)
            if lvl in fit.ratings:
                levels.append({"name": lvl, "uci_elo": e, "skill_level": s, "elo": fit.ratings[lvl],
                               "elo_ci": list(fit.ci[lvl]), "games": int(fit.games[lvl])})
        vs_sf: list[dict] = []
        vs_maia: list[dict] = []
        pair_rows = []
        for a, b in fitted:
            r = self.result(a, b)
            assert r is not None  # every fitted pairing was played or reused
            row = {"a": a, "b": b, "games": r.n_games, "wins": r.wins, "draws": r.draws, "losses": r.losses,
                   "score": r.score, "adjudicated": r.adjudicated, "wall_s": r.wall_s, "pgn": r.pgn,
                   "budget_a": r.budget_a, "budget_b": r.budget_b, "stats_a": r.stats_a, "stats_b": r.stats_b}
            pair_rows.append(row)
            if is_engine(a) or is_engine(b):
                _engine_row(r if is_engine(b) else r.flipped(), fitted=True, vs_sf=vs_sf, vs_maia=vs_maia)
        fitted_keys = {pairing_key(x, y, cfg) for a, b in fitted for x, y in ((a, b), (b, a))}
        for key, r in self.results.items():  # played (here or in a merged part) but not in this fit
            if key in fitted_keys:
                continue
            if r.a in self.names and is_engine(r.b):
                _engine_row(r, fitted=False, vs_sf=vs_sf, vs_maia=vs_maia)
            elif r.b in self.names and is_engine(r.a):
                _engine_row(r.flipped(), fitted=False, vs_sf=vs_sf, vs_maia=vs_maia)
        total_games = sum(r["games"] for r in pair_rows)
        total_s = sum(r["wall_s"] for r in pair_rows)
        ladder = {
            "schema": LADDER_SCHEMA,
            "series": self.series.name,
            "series_dir": str(self.series.directory),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "settings": cfg.to_dict(),
            "budgets": {"ours": {"simulations": cfg.simulations, "search": "batched PUCT MCTS, no noise, best move",
                                 "precision": cfg.precision},
                        "stockfish": {**cfg.stockfish_budget(), "threads": 1, "hash_mb": 16}
                        if cfg.stockfish_levels() else None},
            "elo_method": fit.method,
            "anchor": {self.names[0]: 0.0},
            "strongest": strongest,
            "stockfish_played_by": sorted({r["checkpoint"] for r in vs_sf if r["fitted"]}) or None,
            "stockfish_chosen_as_strongest": planned_strongest,
            "checkpoints": checkpoints,
            "stockfish_levels": levels,
            "elo_stockfish_scale": sf_scale,
            "vs_stockfish": vs_sf,
            "vs_maia": vs_maia,
            "pairs": pair_rows,
            "openings": [name for name, _ in self.openings],
            "timing": {"games": total_games, "wall_s": total_s,
                       "s_per_game_wall": total_s / total_games if total_games else None},
        }
        if cfg.sts_suite:
            ladder["sts"] = self._sts()
            for row in checkpoints:
                sts = ladder["sts"]["checkpoints"].get(row["name"])
                row["sts_percent"] = sts["percent"] if sts else None
        return ladder

    def _sts(self) -> dict:
        """STS totals of every checkpoint, cached per checkpoint in ``sts.json`` (resumable)."""
        from alphazero_concepts.arena.sts import read_sts, run_sts

        cfg = self.config
        sims = cfg.simulations if cfg.sts_simulations is None else cfg.sts_simulations
        path = self.out / "sts.json"
        cache = json.loads(path.read_text()) if path.is_file() else {}
        if cache.get("suite") != str(cfg.sts_suite) or cache.get("simulations") != sims \
                or cache.get("precision", "fp32") != cfg.precision:
            cache = {"suite": str(cfg.sts_suite), "simulations": sims, "precision": cfg.precision, "checkpoints": {}}
        positions = None
        for name in self.names:
            if name in cache["checkpoints"]:
                continue
            positions = positions if positions is not None else read_sts(cfg.sts_suite)
            net, _ = self.series.load(name, cfg.device)
            cache["checkpoints"][name] = run_sts(net, positions, sims, model=name, precision=cfg.precision).to_dict()
            atomic_write_bytes(path, (json.dumps(cache, indent=1) + "\n").encode())
        return cache

    def write_elo(self, ladder: dict) -> None:
        """Store the fitted Elos (first checkpoint = 0) in the series manifest (`Series.set_elo`)."""
        self.series.set_elo({row["name"]: row["elo"] for row in ladder["checkpoints"] if row["elo"] is not None})


def _engine_row(r: MatchResult, *, fitted: bool, vs_sf: list[dict], vs_maia: list[dict]) -> None:
    """Append checkpoint `r.a`'s result against Stockfish or Maia `r.b` to the matching ``ladder.json`` list."""
    sims = r.budget_a.get("simulations")
    if r.b.startswith("maia-"):
        vs_maia.append({"checkpoint": r.a, "maia": r.b, "games": r.n_games, "wins": r.wins, "draws": r.draws,
                        "losses": r.losses, "score": r.score, "sims": sims, "maia_sims": r.budget_b.get("simulations"),
                        "wall_s": r.wall_s, "fitted": fitted})
    else:
        vs_sf.append({"checkpoint": r.a, "stockfish": r.b, "uci_elo": r.budget_b.get("uci_elo"),
                      "skill_level": r.budget_b.get("skill_level"), "games": r.n_games, "wins": r.wins,
                      "draws": r.draws, "losses": r.losses, "score": r.score, "simulations": sims, "sims": sims,
                      "movetime": r.budget_b.get("movetime"), "nodes": r.budget_b.get("nodes"),
                      "engine": r.budget_b.get("engine"), "wall_s": r.wall_s, "stockfish_stats": r.stats_b,
                      "checkpoint_stats": r.stats_a, "fitted": fitted})


def plot_ladder(ladder: dict, path: str | Path) -> Path:
    """Elo (first checkpoint = 0) with CI bars per checkpoint; Stockfish levels as labelled horizontal lines."""
    plt = pyplot()

    rows = [r for r in ladder["checkpoints"] if r["elo"] is not None]
    x = list(range(len(rows)))
    elo = [r["elo"] for r in rows]
    lo = [r["elo"] - r["elo_ci"][0] for r in rows]
    hi = [r["elo_ci"][1] - r["elo"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 3), 4.5))
    ax.errorbar(x, elo, yerr=[lo, hi], fmt="o-", capsize=4, color="tab:blue", label="checkpoint (95% CI)")
    for k, level in enumerate(ladder.get("stockfish_levels", [])):
        label = (f"Stockfish UCI_Elo {level['uci_elo']}" if level["uci_elo"] is not None
                 else f"Stockfish Skill {level['skill_level']}")
        color = plt.cm.Reds(0.5 + 0.4 * k / max(1, len(ladder["stockfish_levels"])))
        ax.axhline(level["elo"], linestyle="--", color=color, label=f"{label} (fitted {level['elo']:+.0f})")
        ax.axhspan(level["elo_ci"][0], level["elo_ci"][1], color=color, alpha=0.08)
    ax.set_xticks(x, [r["name"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel(f"Elo ({next(iter(ladder['anchor']))} = 0)")
    budgets = ladder["budgets"]
    title = f"{ladder['series']}: {budgets['ours']['simulations']} simulations/move"
    if budgets["ours"].get("precision", "fp32") != "fp32":
        title += f" ({budgets['ours']['precision']})"
    if budgets.get("stockfish"):
        sf = budgets["stockfish"]
        title += "; Stockfish " + (f"{sf['nodes']} nodes" if sf.get("nodes") else f"{sf['movetime']} s") + "/move"
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return save_figure(fig, path)
