"""Simulated participants: a network of human play (a Maia level) that answers puzzles and is taught in phase 2.

Why: before strong players give hours to a study, the organiser can ask whether the puzzles teach anything to
anyone. A Maia network (lc0 weights trained on Lichess games of one rating band) is a player of known strength;
a *copy* of it goes through the protocol as a person does (`study/pilot.py` drives the phases):

* **answers** (phases 1 and 3): its most probable legal move from the raw policy (``nodes = 0``, the default:
  Maia is meant to be read without search), or the most-visited move after ``nodes`` simulations of the
  project's batched MCTS;
* **phase 2** ("sees the machine's lines"): the copy is trained on the teacher's moves along each learning
  puzzle's machine line. Every position of the line is a training example with its history (the puzzle position,
  then the line's moves pushed on the board, so the network's history planes hold the line), and the target is
  the teacher's move there (one-hot: the line is all a person is shown) or, where a set gives it, a distribution
  over moves (the STS control's scored moves). The budget is fixed and stated (`TeachBudget`): optimiser,
  learning rate, steps, batch size; the batches are drawn from a generator seeded with the student's seed, which
  is what makes two students of the same level differ. Each step also replays `replay_batch` positions of the
  untaught student's own games with its own policy as the target (`replay_examples`): a regulariser that keeps
  the copy's general play, as a person who studies a few themes does not forget how to play. docs/study.md has
  the sweep that chose the default (Adam, lr 1e-4, replay 32 a step).

Everything is deterministic for a seed on one machine: the network is copied, the data order comes from
``numpy.random.default_rng(seed)``, and ``torch.manual_seed(seed)`` is set before training.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import chess
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alphazero_concepts.core.config import DictConfig, Range, check_fields
from alphazero_concepts.core.puzzleset import Puzzle
from alphazero_concepts.engines import MAIA_LEVELS, locate_maia_dir

__all__ = ["StudentError", "TeachBudget", "TeachingExample", "answer_moves", "fit_rate", "load_student",
           "own_policy", "replay_examples", "resolve_students", "teach", "teaching_examples"]


class StudentError(ValueError):
    """A student that cannot be used: an unknown Maia level, a missing or unreadable weight file."""


@dataclass(frozen=True)
class TeachBudget(DictConfig):
    """The fixed phase-2 budget of every simulated participant (the same for all levels and seeds).

    Adam on the KL divergence from the target to the student's policy over legal moves; `steps` mini-batches of
    `batch_size` examples drawn without replacement within each pass over the examples (seeded), each with
    `replay_batch` of `replay_positions` positions from the untaught student's own games added (target: its own
    policy; 0 turns the replay off). Chosen on the STS positive control (docs/study.md)."""

    optimizer: str = "adam"
    lr: Annotated[float, Range(0, low_open=True)] = 1e-4
    steps: Annotated[int, Range(1)] = 40
    batch_size: Annotated[int, Range(1)] = 32
    weight_decay: Annotated[float, Range(0)] = 0.0
    replay_batch: Annotated[int, Range(0)] = 32
    replay_positions: Annotated[int, Range(1)] = 256

    def __post_init__(self) -> None:
        check_fields(self)
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"TeachBudget.optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")


@dataclass(frozen=True)
class TeachingExample:
    """One phase-2 position (with its history on the board's move stack) and the target over UCI moves."""

    board: chess.Board
    target: Mapping[str, float]


def resolve_students(names: Sequence[str], maia_dir: str | Path | None = None) -> dict[str, Path]:
    """{student name: weight file} for names like ``maia-1500`` (looked up in the Maia folder: `maia_dir`,
    $AZC_MAIA_DIR or ../shared/data/models/maia) or paths to lc0 ``.pb.gz`` files (named by their stem).

    `StudentError` naming the student when a file is missing, and saying where it looked."""
    if not names:
        raise StudentError("--students: at least one student is needed (e.g. maia-1100,maia-1500,maia-1900)")
    out: dict[str, Path] = {}
    folder = locate_maia_dir(maia_dir)
    for name in names:
        path = Path(name)
        if name.endswith(".pb.gz") or path.suffix in (".gz", ".pb"):
            if not path.is_file():
                raise StudentError(f"--students: {path}: no such lc0 weight file")
            key = path.name.removesuffix(".gz").removesuffix(".pb")
        else:
            if name not in MAIA_LEVELS:
                raise StudentError(f"--students: unknown student {name!r}; expected one of {', '.join(MAIA_LEVELS)} "
                                   "or a path to an lc0 .pb.gz file")
            if folder is None:
                where = f"{maia_dir}, " if maia_dir else ""
                raise StudentError(f"--students: no Maia weights found (looked in {where}$AZC_MAIA_DIR and "
                                   "../shared/data/models/maia); set AZC_MAIA_DIR to the folder of maia-*.pb.gz")
            path = folder / f"{name}.pb.gz"
            if not path.is_file():
                raise StudentError(f"--students: {path}: no weights for {name}")
            key = name
        if key in out:
            raise StudentError(f"--students: {key} is named twice")
        out[key] = path
    return out


def load_student(path: str | Path) -> nn.Module:
    """The lc0/Maia network at `path` on the CPU, in eval mode (`StudentError` naming the file if unusable)."""
    from alphazero_concepts.nn.checkpoints import CheckpointError
    from alphazero_concepts.nn.lc0 import load_lc0

    try:
        net, _ = load_lc0(path, "cpu")
    except (CheckpointError, OSError, ValueError) as exc:
        raise StudentError(f"{path}: cannot load the student network: {exc}") from exc
    return net.eval()


def answer_moves(net: nn.Module, boards: Sequence[chess.Board], nodes: int = 0) -> list[str]:
    """The student's answer (UCI) in each position: the raw policy's most probable legal move (`nodes` = 0) or
    the most-visited move after `nodes` simulations of the batched MCTS. Boards must have a legal move."""
    from alphazero_concepts.arena.players import MCTSPlayer

    if not boards:
        return []
    player = MCTSPlayer(net, simulations=nodes, name="student")  # a fresh player: no cache from another net
    with torch.inference_mode():
        return [m.uci() for m in player.choose_moves(list(boards))]


def teaching_examples(puzzles: Sequence[Puzzle], *, root_targets: Mapping[str, Mapping[str, float]] | None = None,
                      line_plies: int | None = None) -> list[TeachingExample]:
    """Phase-2 examples of the learning puzzles: every position along each machine line, with its history.

    The target at ply k is the line's move k (one-hot), except at the puzzle position itself when
    `root_targets` gives a distribution for that puzzle id (moves → weights, normalised here). `line_plies`
    limits the plies used per line (None: the whole line); 1 trains the puzzle positions only."""
    out: list[TeachingExample] = []
    for p in puzzles:
        board = p.board()
        plies = p.line if line_plies is None else p.line[:line_plies]
        for k, uci in enumerate(plies):
            if k == 0 and root_targets and p.id in root_targets:
                raw = {m: float(w) for m, w in root_targets[p.id].items() if w > 0}
                total = sum(raw.values())
                target = {m: w / total for m, w in raw.items()} if total > 0 else {uci: 1.0}
            else:
                target = {uci: 1.0}
            out.append(TeachingExample(board.copy(), target))
            board.push(chess.Move.from_uci(uci))
    return out


def _encode(net: nn.Module, examples: Sequence[TeachingExample]
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Planes (N, ...), legal-move mask (N, P) and target distribution (N, P) of the examples in `net`'s format."""
    fmt = net.format
    planes = torch.from_numpy(fmt.encode([e.board for e in examples]))
    size = fmt.policy_size
    mask = torch.zeros((len(examples), size), dtype=torch.bool)
    target = torch.zeros((len(examples), size), dtype=torch.float32)
    for i, e in enumerate(examples):
        moves, idx = fmt.legal_move_indices(e.board)
        mask[i, torch.from_numpy(np.asarray(idx, dtype=np.int64))] = True
        index = {m.uci(): int(j) for m, j in zip(moves, idx, strict=True)}
        for uci, w in e.target.items():
            if uci not in index:
                raise ValueError(f"teaching target {uci} is not legal in {e.board.fen()!r}")
            target[i, index[uci]] += w
    return planes, mask, target


#: Seed of the student's own games that the replay positions are drawn from (fixed: the pool is the student's).
REPLAY_SEED = 0
_REPLAY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def own_policy(net: nn.Module, boards: Sequence[chess.Board]) -> list[dict[str, float]]:
    """`net`'s raw policy over the legal moves of each board ({UCI: probability}); boards need a legal move."""
    fmt = net.format
    with torch.inference_mode():
        logits, _ = net(torch.from_numpy(fmt.encode(list(boards))))
    out = []
    for i, board in enumerate(boards):
        moves, idx = fmt.legal_move_indices(board)
        p = torch.softmax(logits[i, torch.from_numpy(np.asarray(idx, dtype=np.int64))].double(), 0).numpy()
        out.append({m.uci(): float(w) for m, w in zip(moves, p, strict=True)})
    return out


def replay_examples(net: nn.Module, n: int, seed: int, *, games: int = 16, min_ply: int = 8,
                    max_ply: int = 80) -> list[TeachingExample]:
    """`n` positions of the student's own games (`games` games from the start position, each move drawn from its
    raw policy; positions from ply `min_ply` on), each with the student's own policy there as the target."""
    rng = np.random.default_rng(seed)
    boards = [chess.Board() for _ in range(games)]
    pool: list[chess.Board] = []
    for ply in range(max_ply):
        live = [b for b in boards if not b.is_game_over(claim_draw=False)]
        if not live:
            break
        for b, policy in zip(live, own_policy(net, live), strict=True):
            moves = list(policy)
            w = np.asarray([policy[m] for m in moves])
            b.push(chess.Move.from_uci(moves[int(rng.choice(len(moves), p=w / w.sum()))]))
            if ply + 1 >= min_ply and not b.is_game_over(claim_draw=False):
                pool.append(b.copy())
    picked = [pool[int(i)] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False)]
    return [TeachingExample(b, t) for b, t in zip(picked, own_policy(net, picked), strict=True)]


def teach(net: nn.Module, examples: Sequence[TeachingExample], budget: TeachBudget, seed: int) -> nn.Module:
    """A trained copy of `net` (the original is untouched): `budget.steps` optimiser steps on the examples.

    Loss: KL(target ‖ softmax over the legal moves of the student's logits), i.e. cross-entropy to the target,
    averaged over the taught batch, plus the same averaged over the replay batch (target: the untaught `net`'s
    policy). Mini-batches are drawn from seeded permutations, renewed at every pass."""
    student = copy.deepcopy(net)
    if not examples:
        return student.eval()
    planes, mask, target = _encode(student, examples)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    replay = None
    if budget.replay_batch:
        key = (budget.replay_positions, REPLAY_SEED)
        cached = _REPLAY.setdefault(net, {})
        if key not in cached:  # the same for every participant of this student: a function of its weights
            cached[key] = _encode(net, replay_examples(net.eval(), budget.replay_positions, REPLAY_SEED))
        r_planes, r_mask, r_target = cached[key]
        r_order: list[int] = []
        r_size = min(budget.replay_batch, len(r_planes))
        replay = (r_planes, r_mask, r_target)
    params = [p for p in student.parameters() if p.requires_grad]
    if budget.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=budget.lr, weight_decay=budget.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=budget.lr, momentum=0.9, weight_decay=budget.weight_decay)
    student.train()
    order: list[int] = []
    n = len(examples)
    size = min(budget.batch_size, n)
    for _ in range(budget.steps):
        if len(order) < size:
            order.extend(int(i) for i in rng.permutation(n))
        batch = torch.tensor(order[:size], dtype=torch.int64)
        del order[:size]
        x, m, t = planes[batch], mask[batch], target[batch]
        if replay is not None:
            if len(r_order) < r_size:
                r_order.extend(int(i) for i in rng.permutation(len(replay[0])))
            rb = torch.tensor(r_order[:r_size], dtype=torch.int64)
            del r_order[:r_size]
            x, m, t = (torch.cat([a, b[rb]]) for a, b in zip((x, m, t), replay, strict=True))
        logits, _ = student(x)
        logp = F.log_softmax(logits.masked_fill(~m, float("-inf")), dim=1).masked_fill(~m, 0.0)
        per = -(t * logp).sum(dim=1)
        loss = per[:size].mean() + (per[size:].mean() if replay is not None else 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return student.eval()


def fit_rate(net: nn.Module, examples: Sequence[TeachingExample]) -> float | None:
    """Share of the examples where the student's top legal move is the target's most weighted move (how much of
    what phase 2 showed the student took in); None for no examples."""
    if not examples:
        return None
    moves = answer_moves(net, [e.board for e in examples])
    best = [max(e.target.items(), key=lambda kv: kv[1])[0] for e in examples]
    return float(np.mean([m == b for m, b in zip(moves, best, strict=True)]))
