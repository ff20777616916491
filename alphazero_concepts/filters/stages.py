"""The filter stages over a run directory: read concepts, run a filter, write its results (resumable).

    novelty_basis_stage   human + machine samples → NOVELTY_BASIS/<layer>.npz, ranks.json, figures/novelty_spectrum.png
    teachability_stage    RUN concepts → RUN/teachability.jsonl (+ RUN/pool.npz, RUN/pool_top1.npz caches)
    novelty_stage         RUN concepts + bases → RUN/novelty.jsonl
    funnel_stage          RUN → RUN/funnel.json + RUN/figures/funnel.png (+ controls.png)

Order (`order`): "teachability-first" (the paper's; novelty scores only the teachable concepts),
"novelty-first" (teachability scores only the novel ones), or "independent" (each filter scores every solved
concept). Every stage appends one record per concept and skips concepts already in its results file, so a killed
run continues where it stopped. The lead's end-to-end pipeline calls these functions; `commands.py` is the CLI.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from alphazero_concepts.chess.positions import ReadReport
from alphazero_concepts.concepts.conceptset import Concept, ConceptSet
from alphazero_concepts.concepts.samples import PositionSample, SelfPlaySampleConfig, layer_latents, selfplay_sample
from alphazero_concepts.core.files import atomic_write_bytes, write_json
from alphazero_concepts.core.rundir import (
    CONTROLS_FIGURE,
    FIGURES,
    FUNNEL,
    FUNNEL_FIGURE,
    NOVELTY,
    NOVELTY_BASIS,
    POOL,
    POOL_TOP1,
    TEACHABILITY,
    TEACHABILITY_CONFIG,
)
from alphazero_concepts.filters.funnel import controls_figure, funnel, funnel_figure
from alphazero_concepts.filters.novelty import NoveltyBasis, NoveltyConfig, build_basis, spectrum_figure
from alphazero_concepts.filters.rundir import ORDERS, ResultLog, count_roots, read_results, safe_layer_name
from alphazero_concepts.filters.teachability import (
    Pool,
    TeachConfig,
    concept_seed,
    pool_scores,
    random_sparse_vector,
    rollout_prototypes,
    teach_rows,
    top_prototypes,
)
from alphazero_concepts.nn.checkpoints import CheckpointMeta, Series
from alphazero_concepts.nn.network import HookedNet

Log = Callable[[str], None]
Progress = Callable[[int, int], None]
PAPER_RANKS = {"layer": 19, "human": 7857, "machine": 8269, "n": 17184, "dim": 16384}


class StageError(ValueError):
    """A stage that cannot run on this run directory (missing inputs, wrong order); the message says what to do."""


def _check_order(order: str) -> None:
    if order not in ORDERS:
        raise StageError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")


def _candidates(run: Path, concepts: list[Concept], stage: str, order: str) -> list[Concept]:
    """Solved concepts this stage scores under `order` (only the survivors of the other filter when it runs 2nd)."""
    solved = [c for c in concepts if c.solved]
    needs = {("novelty", "teachability-first"): (TEACHABILITY, "kept", "azc filter teachability"),
             ("teachability", "novelty-first"): (NOVELTY, "novel", "azc filter novelty --order novelty-first")}
    if (stage, order) not in needs:
        return solved
    name, key, command = needs[(stage, order)]
    if not (run / name).is_file():
        raise StageError(f"{run / name} is missing: with order {order} run `{command} --run {run}` first "
                         "(or pass --order independent)")
    previous = read_results(run / name)
    return [c for c in solved if previous.get(c.id, {}).get(key)]


def _concept_info(c: Concept) -> dict:
    return {"root": c.record.get("root"), "kind": c.kind, "nonzeros": c.nonzeros, "dim": int(c.vector.size)
            if c.vector is not None else None, "source": c.source}


# --------------------------------------------------------------------------------------------------------------
# Novelty


def novelty_basis_stage(net: HookedNet, human: PositionSample, machine: PositionSample, layers: Sequence[str],
                        out: str | Path, config: NoveltyConfig | None = None, *, model_id: str = "",
                        figure: str | Path | None = None, log: Log = print, memory_bytes: int = 2 << 30
                        ) -> dict[str, NoveltyBasis]:
    """Build (or reuse) the bases of `layers` from equal-size human and machine samples; write the figure."""
    config = config or NoveltyConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = min(len(human), len(machine))
    if n < 2:
        raise StageError(f"need at least 2 positions per side (human {len(human)}, machine {len(machine)})")
    if len(human) != len(machine):
        log(f"equal sizes: using {n} positions of each (human {len(human)}, machine {len(machine)})")
    rng = np.random.default_rng(config.seed)
    human = human.subset(np.sort(rng.choice(len(human), n, replace=False))) if len(human) > n else human
    machine = machine.subset(np.sort(rng.choice(len(machine), n, replace=False))) if len(machine) > n else machine
    bases: dict[str, NoveltyBasis] = {}
    todo = []
    for layer in layers:
        path = out / f"{safe_layer_name(layer)}.npz"
        if path.is_file():
            basis = NoveltyBasis.load(path)
            if basis.n == n and basis.meta.get("model") == model_id:
                bases[layer] = basis
                log(f"{layer}: basis exists ({path}), reused")
                continue
        todo.append(layer)
    groups: list[list[str]] = []
    for layer in todo:  # bounded memory: layers grouped so that both latent matrices fit in `memory_bytes`
        size = 2 * n * int(np.prod(net.layer_shape(layer))) * 4
        if groups and sum(2 * n * int(np.prod(net.layer_shape(x))) * 4 for x in groups[-1]) + size <= memory_bytes:
            groups[-1].append(layer)
        else:
            groups.append([layer])
    for group in groups:
        log(f"latents of {n} human and {n} machine positions at {', '.join(group)} …")
        zh = layer_latents(net, human, group)
        za = layer_latents(net, machine, group)
        for layer in group:
            meta = {"model": model_id, "human_source": human.source, "machine_source": machine.source,
                    "config": config.to_dict()}
            basis = build_basis(zh[layer], za[layer], layer, config, meta)
            basis.save(out / f"{safe_layer_name(layer)}.npz")
            bases[layer] = basis
            log(f"{layer}: rank human {basis.rank_human:,} vs machine {basis.rank_machine:,} (d = {basis.dim:,})")
        del zh, za
    ordered = [bases[x] for x in layers]
    write_json(out / "ranks.json", {"layers": {b.layer: b.summary() for b in ordered}, "paper": PAPER_RANKS})
    if figure is not None:
        spectrum_figure(ordered, figure)
    return bases


def load_bases(directory: str | Path, layers: Sequence[str]) -> dict[str, NoveltyBasis]:
    """Bases of `layers` from a basis directory; StageError naming the missing ones."""
    directory = Path(directory)
    missing = [x for x in layers if not (directory / f"{safe_layer_name(x)}.npz").is_file()]
    if missing:
        raise StageError(f"{directory}: no novelty basis for {', '.join(missing)}; build it with "
                         f"`azc novelty basis --layers {' --layers '.join(missing)} --out {directory}`")
    return {x: NoveltyBasis.load(directory / f"{safe_layer_name(x)}.npz") for x in layers}


def novelty_stage(run: str | Path, *, basis_dir: str | Path | None = None, order: str = "teachability-first",
                  log: Log = print) -> dict:
    """Score the run's concepts (s_k over the k grid) into RUN/novelty.jsonl; returns a summary."""
    _check_order(order)
    run = Path(run)
    report = ReadReport(str(run))
    concepts = ConceptSet.load(run, report=report)
    todo_all = _candidates(run, concepts, "novelty", order)
    results = ResultLog(run / NOVELTY)
    todo = [c for c in todo_all if c.id not in results.done]
    layers = sorted({c.layer for c in todo})
    bases = load_bases(basis_dir or run / NOVELTY_BASIS, layers) if todo else {}
    for layer in layers:
        group = [c for c in todo if c.layer == layer]
        basis = bases[layer]
        dims = {c.vector.size for c in group}
        if dims != {basis.dim}:
            raise StageError(f"{layer}: concept vectors have dimension {sorted(dims)}, the basis {basis.dim}")
        scores = basis.scores(np.stack([c.vector for c in group]))
        ks = basis.ks()
        for c, row in zip(group, scores, strict=True):
            rec = {"id": c.id, "layer": layer, "ks": ks, "scores": [float(x) for x in row],
                   "novel": bool(len(row) > 0 and np.all(row > 0)), "min_score": float(row.min()) if len(row)
                   else None, "rank_human": basis.rank_human, "rank_machine": basis.rank_machine,
                   "basis_n": basis.n, "model": basis.meta.get("model"), "concept": _concept_info(c)}
            results.add(rec)
        log(f"{layer}: {len(group)} concepts scored, {sum(results.done[c.id]['novel'] for c in group)} novel")
    results.compact()
    scored = [results.done[c.id] for c in todo_all if c.id in results.done]
    return {"concepts": len(concepts), "candidates": len(todo_all), "scored_now": len(todo),
            "novel": sum(bool(r["novel"]) for r in scored), "skipped_records": report.skipped, "order": order}


# --------------------------------------------------------------------------------------------------------------
# Teachability


def series_students(series: Series, teacher_meta: CheckpointMeta | None, device: str = "cpu"
                    ) -> list[tuple[str, Callable[[], HookedNet]]]:
    """Checkpoints before the teacher in series order (earliest first), as lazy loaders.

    The teacher is found by name and file hash; a teacher from outside the series makes every checkpoint of the
    series a candidate student, except files identical to the teacher's.
    """
    from alphazero_concepts.nn.checkpoints import file_sha256

    names = series.names
    sha = (teacher_meta.extra or {}).get("sha256") if teacher_meta else None
    if teacher_meta is not None and teacher_meta.name in names and \
            (sha is None or file_sha256(series.path_of(teacher_meta.name)) == sha):
        names = names[: names.index(teacher_meta.name)]
    else:
        names = [x for x in names if sha is None or file_sha256(series.path_of(x)) != sha]

    def loader(name: str) -> Callable[[], HookedNet]:
        return lambda: series.load(name, device)[0]

    return [(name, loader(name)) for name in names]


def _fingerprint(sample: PositionSample, teacher_id: str) -> str:
    h = hashlib.sha256(teacher_id.encode())
    for fen in sample.fens:
        h.update(fen.encode())
    return h.hexdigest()[:16]


def _load_top1(path: Path, pool: Pool, fingerprint: str) -> None:
    if not path.is_file():
        return
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["fingerprint"]) != fingerprint:
                return
            for key in data.files:
                if key.startswith("top1:"):
                    pool.cache[key[5:]] = np.asarray(data[key], dtype=np.int64)
    except (OSError, ValueError, KeyError):
        return


def _save_top1(path: Path, pool: Pool, fingerprint: str) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, fingerprint=np.array(fingerprint), **{f"top1:{k}": v for k, v in pool.cache.items()})
    atomic_write_bytes(path, buf.getvalue())


def obtain_pool(run: str | Path, teacher: HookedNet, *, size: int, pool_file: str | Path | None = None,
                selfplay: SelfPlaySampleConfig | None = None, seed: int = 0, log: Log = print,
                progress: Progress | None = None) -> PositionSample:
    """The prototype pool: `pool_file` (a sample, PGN or position file), else RUN/pool.npz, else new self-play."""
    from alphazero_concepts.concepts.samples import load_sample

    run = Path(run)
    if pool_file is not None:
        sample = load_sample(pool_file, size, seed=seed)
        log(f"pool: {len(sample)} positions from {pool_file}")
        return sample
    path = run / POOL
    if path.is_file():
        sample = PositionSample.load(path)
        log(f"pool: {len(sample)} positions from {path}")
        return sample
    config = selfplay or SelfPlaySampleConfig(positions=size, seed=seed)
    log(f"pool: {config.positions} self-play positions of the teacher ({config.mode}) …")
    sample = selfplay_sample(teacher, config, progress=progress)
    sample.save(path)
    return sample


def teachability_stage(run: str | Path, teacher: HookedNet, students: Sequence[tuple[str, Callable[[], HookedNet]]],
                       config: TeachConfig | None = None, *, teacher_meta: CheckpointMeta | None = None,
                       pool_file: str | Path | None = None, selfplay: SelfPlaySampleConfig | None = None,
                       order: str = "teachability-first", limit: int | None = None, group_size: int = 512,
                       log: Log = print, progress: Progress | None = None) -> dict:
    """Teachability of the run's concepts (and random-vector controls) into RUN/teachability.jsonl."""
    _check_order(order)
    config = config or TeachConfig()
    run = Path(run)
    report = ReadReport(str(run))
    concepts = ConceptSet.load(run, report=report)
    candidates = _candidates(run, concepts, "teachability", order)[:limit]
    results = ResultLog(run / TEACHABILITY)
    write_json(run / TEACHABILITY_CONFIG, {"config": config.to_dict(), "order": order,
                                                  "teacher": teacher_meta.name if teacher_meta else None,
                                                  "students": [name for name, _ in students]})
    controls = _controls(candidates, config)
    todo = [c for c in [*candidates, *controls] if c.id not in results.done]
    summary = {"concepts": len(concepts), "candidates": len(candidates), "controls": len(controls),
               "scored_now": len(todo), "skipped_records": report.skipped, "order": order}
    if not todo:
        return {**summary, **_teach_counts(results, candidates)}
    sample = obtain_pool(run, teacher, size=config.pool_size, pool_file=pool_file, selfplay=selfplay,
                         seed=config.seed, log=log, progress=progress)
    teacher_id = (teacher_meta.extra or {}).get("sha256", teacher_meta.name) if teacher_meta else "teacher"
    pool = Pool(sample, teacher, students)
    fingerprint = _fingerprint(sample, str(teacher_id))
    _load_top1(run / POOL_TOP1, pool, fingerprint)
    rollout_cache: dict = {}
    baselines: dict | None = {} if config.shared_baseline else None
    done = 0
    for lo in range(0, len(todo), group_size):
        group = todo[lo:lo + group_size]
        by_layer: dict[str, list[Concept]] = {}
        for c in group:
            by_layer.setdefault(c.layer, []).append(c)
        log(f"scoring {len(group)} vectors over the pool ({len(sample)} positions) …")
        scores = pool_scores(pool, {layer: np.stack([c.vector for c in cs]) for layer, cs in by_layer.items()},
                             score=config.score)
        for layer, cs in by_layer.items():
            for j, c in enumerate(cs):
                s = scores[layer][:, j]
                if config.prototype_rule == "rollouts" and c.kind == "dynamic":
                    extra = c.record.get("extra", {})
                    protos = rollout_prototypes(pool, c.vector, layer, s, config, player=extra.get("player", "one"),
                                                prophylactic=bool(extra.get("prophylactic", False)),
                                                cache=rollout_cache)
                else:
                    protos = top_prototypes(s, config.top_fraction)
                is_control = c.kind == "control"
                student = None
                if is_control:  # a control always gets a lift: the rule's student, else the earliest checkpoint
                    student = _rule_or_earliest(pool, protos, config)
                result = teach_rows(pool, protos, config, concept_id=c.id, layer=layer,
                                    kind="control" if is_control else "concept", student=student,
                                    baselines=baselines)
                if config.prototype_rule == "rollouts" and c.kind != "dynamic":
                    result.prototype_rule = "top"
                result.prototype_scores = [float(s[r]) for r in protos]  # later stages read rows and scores back
                rec = {**result.to_record(), "concept": _concept_info(c),
                       "teacher": teacher_meta.name if teacher_meta else None, "teacher_sha256": teacher_id}
                results.add(rec)
                _save_top1(run / POOL_TOP1, pool, fingerprint)
                done += 1
                if progress:
                    progress(done, len(todo))
                log(f"{c.id}: {result.status}" + (f", student {result.student}, lift {result.lift:+.3f} "
                                                   f"[{result.ci[0]:+.3f}, {result.ci[1]:+.3f}]"
                                                   f"{' kept' if result.kept else ''}"
                                                   if result.status == 'ok' else ""))
    results.compact()
    return {**summary, **_teach_counts(results, candidates)}


def _rule_or_earliest(pool: Pool, protos: np.ndarray, config: TeachConfig) -> str | None:
    from alphazero_concepts.filters.teachability import select_student

    if not pool.student_names or len(protos) < max(2, config.min_prototypes):
        return None
    agreements = [(name, pool.agreement(name, protos)) for name in pool.student_names]
    return select_student(agreements, config.max_student_agreement) or pool.student_names[0]


def _controls(candidates: list[Concept], config: TeachConfig) -> list[Concept]:
    """`random_controls` random vectors per layer, with the median sparsity of that layer's concepts."""
    out = []
    layers = sorted({c.layer for c in candidates})
    for layer in layers:
        cs = [c for c in candidates if c.layer == layer]
        dim = int(cs[0].vector.size)
        nonzeros = int(np.median([c.nonzeros for c in cs]))
        for k in range(config.random_controls):
            v = random_sparse_vector(dim, nonzeros, concept_seed(config.seed, f"control/{layer}/{k}"))
            out.append(Concept(f"control/{layer}/{k}", layer, {"kind": "control", "nonzeros": nonzeros}, v,
                                    "random sparse vector"))
    return out


def _teach_counts(results: ResultLog, candidates: list[Concept]) -> dict:
    recs = [results.done[c.id] for c in candidates if c.id in results.done]
    return {"teachable": sum(bool(r.get("kept")) for r in recs),
            "already_known": sum(r.get("status") == "already known" for r in recs),
            "too_few_prototypes": sum(r.get("status") == "too few prototypes" for r in recs)}


# --------------------------------------------------------------------------------------------------------------
# Funnel


def funnel_stage(run: str | Path, *, order: str = "teachability-first", figure: bool = True) -> dict:
    """RUN/funnel.json (+ RUN/figures/funnel.png, and controls.png when there are controls) from the concepts and
    whatever filter results exist."""
    _check_order(order)
    run = Path(run)
    concepts = ConceptSet.load(run)
    teachability = read_results(run / TEACHABILITY)
    result = funnel(concepts, teachability, read_results(run / NOVELTY),
                    roots=count_roots(run, concepts), order="teachability-first" if order == "independent"
                    else order)
    ranks = run / NOVELTY_BASIS / "ranks.json"
    if ranks.is_file():
        result["ranks"] = json.loads(ranks.read_text())
    write_json(run / FUNNEL, result)
    if figure:
        funnel_figure(result, run / FIGURES / FUNNEL_FIGURE)
        if controls_figure(teachability, run / FIGURES / CONTROLS_FIGURE) is None:
            (run / FIGURES / CONTROLS_FIGURE).unlink(missing_ok=True)  # none from an earlier funnel either
    return result
