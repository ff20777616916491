"""Known-answer checks of the filters on a real checkpoint series (merged into `azc validate --quick --json`).

- `novelty_planted_ok`: bases from the teacher's real activations at its last residual block — human positions
  (the bundled master games, book plies skipped) against the teacher's self-play positions (600 each) — with one
  planted machine-only direction u added to the machine latents (u orthogonal to the whole human span, with an
  amplitude that makes it the machine's leading direction). This is semi-synthetic on purpose: which real
  directions are machine-only is not known in advance, and with n < d both real matrices have full rank n.
  Passes when u is novel (s_k > 0 for every k) and two vectors of the human span (the top human direction and
  a random combination of human latents) are not.
- `teachability_planted_lift`: a concept the teacher provably knows and the weakest checkpoint does not — pool
  positions where the teacher's top move is a capture and the weakest checkpoint's is not — taught (KL, Adam
  1e-4, 5 epochs) to the student the rule selects (the latest earlier checkpoint under 0.2 agreement on these
  positions). The lift is agreement(concept-trained) − agreement(random-trained) on held-out prototypes;
  ≥ 0.1 is required. The pool is 3,000 positions of the bundled human games by default (`pool_source="selfplay"`
  uses the teacher's self-play, several times slower on a CPU): the check is about teaching, and the concept is
  defined by the two networks' moves whatever the positions' origin.
- `random_vector_lift_ci`: a random sparse vector at the same layer (64 non-zeros) gets its prototypes (the top
  5% of the pool by v · z — more than the 2.5% of the filter, so that the test set is not tiny) and its lift
  for the same student; its bootstrap 95% interval should contain 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import chess
import numpy as np

from alphazero_concepts.concepts.samples import (
    SelfPlaySampleConfig,
    bundled_human_games,
    forward,
    human_sample,
    layer_latents,
    legal_argmax,
    selfplay_sample,
)
from alphazero_concepts.filters.novelty import NoveltyConfig, build_basis, right_singular_basis
from alphazero_concepts.filters.teachability import (
    Pool,
    TeachConfig,
    random_sparse_vector,
    teach_rows,
    top_prototypes,
)
from alphazero_concepts.nn.checkpoints import Series
from alphazero_concepts.nn.network import HookedNet


def last_block(net: HookedNet) -> str:
    """The deepest residual-stream layer (`block{i}`), the stem when there is none."""
    blocks = [n for n in net.layer_names if n.startswith("block") and "." not in n]
    return blocks[-1] if blocks else net.layer_names[0]


def _resolve(net_or_series: HookedNet | Series | str | Path | None, device: str
             ) -> tuple[HookedNet, list[tuple[str, Callable[[], HookedNet]]], str]:
    from alphazero_concepts.filters.stages import series_students
    from alphazero_concepts.nn.loading import bundled_series, resolve_series

    if isinstance(net_or_series, HookedNet):
        teacher = net_or_series
        series = bundled_series()
        state = {k: v.float() for k, v in teacher.state_dict().items()}
        students = []
        for name in series.names:  # every bundled checkpoint except one identical to the given teacher
            def load(name: str = name) -> HookedNet:
                return series.load(name, device)[0]

            other = load().state_dict()
            if set(other) == set(state) and all(bool((other[k].float() == state[k]).all()) for k in state):
                continue
            students.append((name, load))
        return teacher, students, "given network"
    series = net_or_series if isinstance(net_or_series, Series) else resolve_series(net_or_series)
    teacher, meta = series.load(device=device)
    return teacher, series_students(series, meta, device), meta.name


def _is_capture(fen: str, index: int, fmt) -> bool:
    board = chess.Board(fen)
    return index >= 0 and board.is_capture(fmt.index_to_move(int(index), board))


def planted_novelty(z_human: np.ndarray, z_machine: np.ndarray, layer: str, seed: int = 0) -> dict:
    """The semi-synthetic novelty check on real latents (see the module notes)."""
    rng = np.random.default_rng(seed)
    n = len(z_human)
    real = {"human": right_singular_basis(z_human, max_components=1), "machine": right_singular_basis(z_machine,
                                                                                                    max_components=1)}
    full_h = right_singular_basis(z_human, max_components=z_human.shape[1])
    g = rng.standard_normal(z_human.shape[1])
    u = g - full_h.basis.astype(np.float64) @ (full_h.basis.T.astype(np.float64) @ g)
    u /= np.linalg.norm(u)
    amplitude = 2.0 * float(real["machine"].singular_values[0]) / np.sqrt(n)
    planted = z_machine + np.outer(rng.standard_normal(n) * amplitude, u).astype(np.float32)
    basis = build_basis(z_human, planted, layer, NoveltyConfig(positions=n, seed=seed))
    in_human = {"top_human_direction": full_h.basis[:, 0].astype(np.float64),
                "random_human_combination": z_human.T.astype(np.float64) @ rng.standard_normal(n)}
    scores = {"planted_machine_only": basis.score(u), **{k: basis.score(v) for k, v in in_human.items()}}
    ok = scores["planted_machine_only"].novel and not any(scores[k].novel for k in in_human)
    return {"ok": bool(ok), "layer": layer, "n": n, "dim": int(z_human.shape[1]),
            "real_rank_human": real["human"].rank, "real_rank_machine": real["machine"].rank,
            "rank_rule": real["human"].rule, "k_grid": basis.ks(),
            "min_score": {k: s.min_score for k, s in scores.items()},
            "novel": {k: s.novel for k, s in scores.items()}}


def filters_validation(net_or_series: HookedNet | Series | str | Path | None = None, seed: int = 0, *,
                       pool_size: int = 3000, pool_source: str = "human", novelty_positions: int = 600,
                       max_planted: int = 300, control_nonzeros: int = 64, control_fraction: float = 0.05,
                       device: str = "cpu",
                       log: Callable[[str], None] = print) -> dict:
    """The three filter checks on a series (default: the bundled teacher series); JSON-ready dict.

    Top-level keys: `novelty_planted_ok`, `teachability_planted_lift`, `random_vector_lift_ci`; details under
    `filters`.
    """
    start = time.perf_counter()
    timings: dict[str, float] = {}
    teacher, students, teacher_name = _resolve(net_or_series, device)
    if not students:
        raise ValueError("the series has no checkpoint before the teacher: nothing to teach")
    layer = last_block(teacher)
    fmt = teacher.format

    t0 = time.perf_counter()
    if pool_source == "selfplay":
        log(f"teacher self-play pool ({pool_size} positions) …")
        pool_sample = selfplay_sample(teacher, SelfPlaySampleConfig(positions=pool_size, oversample=1.0, seed=seed))
    else:
        log(f"pool: {pool_size} positions of the bundled human games …")
        pool_sample = human_sample(bundled_human_games(), pool_size, min_ply=10, seed=seed)
    timings["pool_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    pool = Pool(pool_sample, teacher, students)
    rows = np.arange(len(pool_sample))
    z_parts = []
    for chunk, logits, acts in forward(teacher, pool_sample, [layer]):
        pool.set_top1("teacher", chunk, legal_argmax(logits, [pool.legal[i] for i in chunk]))
        z_parts.append(acts[layer])
    z_pool = np.concatenate(z_parts)
    weakest = students[0][0]
    t_top, w_top = pool.top1("teacher", rows), pool.top1(weakest, rows)
    planted = np.array([i for i in rows if t_top[i] != w_top[i] and _is_capture(pool_sample.fens[i], t_top[i], fmt)
                        and not _is_capture(pool_sample.fens[i], w_top[i], fmt)], dtype=np.int64)
    rng = np.random.default_rng(seed)
    if len(planted) > max_planted:
        planted = np.sort(rng.choice(planted, max_planted, replace=False))
    timings["pool_predictions_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    log(f"machine positions: {novelty_positions} of the teacher's self-play …")
    machine = selfplay_sample(teacher, SelfPlaySampleConfig(positions=novelty_positions, oversample=1.0, seed=seed))
    timings["selfplay_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    log(f"planted concept: {len(planted)} positions where the teacher captures and {weakest} does not; teaching …")
    teach = TeachConfig(seed=seed)
    planted_result = teach_rows(pool, planted, teach, concept_id="planted/capture", layer="", kind="planted")
    timings["planted_teach_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    student = planted_result.student or weakest
    v = random_sparse_vector(z_pool.shape[1], control_nonzeros, np.random.default_rng([seed, 1]))
    protos = top_prototypes(z_pool @ v, control_fraction)
    log(f"random-vector control: {len(protos)} prototypes at {layer}, student {student} …")
    control = teach_rows(pool, protos, teach, concept_id="control/random", layer=layer, kind="control",
                         student=student)
    timings["control_teach_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    log(f"novelty: human vs self-play latents at {layer} …")
    human = human_sample(bundled_human_games(), len(machine), min_ply=10, seed=seed + 1)
    n = min(len(human), len(machine))
    z_human = layer_latents(teacher, human.subset(np.arange(n)), [layer])[layer]
    z_machine = layer_latents(teacher, machine.subset(np.arange(n)), [layer])[layer]
    novelty = planted_novelty(z_human, z_machine, layer, seed)
    timings["novelty_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - start

    lift = planted_result.lift if planted_result.status == "ok" else float("nan")
    return {
        "novelty_planted_ok": novelty["ok"],
        "teachability_planted_lift": lift,
        "random_vector_lift_ci": [float(control.ci[0]), float(control.ci[1])],
        "filters": {
            "teacher": teacher_name, "layer": layer, "pool": len(pool_sample), "pool_source": pool_source,
            "seed": seed,
            "planted": planted_result.to_record(), "control": {**control.to_record(), "nonzeros": control_nonzeros,
                                                              "top_fraction": control_fraction},
            "novelty": novelty, "timings": timings,
        },
    }
