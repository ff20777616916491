"""The amplification check (METHOD.md §6): push one layer's activations along a concept vector and watch the policy.

For a concept vector v at layer l, every position's activation z (flattened, as `latents` and the miner see it)
is replaced during the forward pass by

    z̃ = (1 − α) z + α β (‖z‖ / ‖v‖) v

so α = 0 is the plain network and α = 1 replaces z by v scaled to z's norm (times β). If v is what the network uses
to find the concept's moves, raising α should raise the policy's agreement with the concept's puzzle answers. The
same is done with random vectors of the same sparsity (as many non-zeros, at random positions with random signs,
carrying v's magnitudes), which shows how much of any change is just "pushing the activations somewhere".

The hook lives only inside `steered(...)` (`net.hooks`), so nothing is left attached afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import chess
import numpy as np
import torch

from alphazero_concepts.chess.positions import InputError
from alphazero_concepts.concepts.conceptset import Concept, ConceptSet
from alphazero_concepts.core.config import DictConfig
from alphazero_concepts.core.rundir import CONCEPTS, VECTORS
from alphazero_concepts.nn.network import HookedNet, HookFn, predict
from alphazero_concepts.search.mcts import legal_softmax


class SteerError(ValueError):
    """A concept or position set that cannot be steered with (unknown id, wrong size, illegal answer)."""


def steering_hook(vector: np.ndarray | torch.Tensor, alpha: float, beta: float = 1.0) -> HookFn:
    """A hook replacing each row z of a layer's output by (1 − α) z + α β (‖z‖ / ‖v‖) v (rows flattened)."""
    v = torch.as_tensor(np.asarray(vector, dtype=np.float32)).flatten()
    v_norm = float(v.norm())
    if v_norm == 0:
        raise SteerError("the steering vector is zero")

    def hook(z: torch.Tensor) -> torch.Tensor:
        flat = z.reshape(len(z), -1)
        if flat.shape[1] != v.numel():
            raise SteerError(f"steering vector has {v.numel()} entries, the layer has {flat.shape[1]}")
        vv = v.to(device=z.device, dtype=z.dtype)
        norms = flat.norm(dim=1, keepdim=True)
        out = (1.0 - alpha) * flat + alpha * beta * (norms / v_norm) * vv
        return out.reshape(z.shape)

    return hook


@contextlib.contextmanager
def steered(net: HookedNet, layer: str, vector: np.ndarray, alpha: float, beta: float = 1.0) -> Iterator[HookedNet]:
    """`net` with `layer` steered along `vector` inside the block; the hook is removed on exit (even on error)."""
    with net.hooks([(layer, steering_hook(vector, alpha, beta))]):
        yield net


def random_like(vector: np.ndarray, seed: int = 0) -> np.ndarray:
    """A random vector of the same size and sparsity: v's non-zero magnitudes, shuffled onto random positions,
    with random signs (seeded)."""
    v = np.asarray(vector, dtype=np.float32).ravel()
    rng = np.random.default_rng(seed)
    mags = np.abs(v[v != 0])
    out = np.zeros_like(v)
    positions = rng.choice(v.size, size=mags.size, replace=False)
    out[positions] = rng.permutation(mags) * rng.choice(np.array([-1.0, 1.0], np.float32), size=mags.size)
    return out


def load_concept(source: str | Path, concept_id: str | None = None, layer: str | None = None) -> Concept:
    """A concept from a mining run directory (``concepts.jsonl`` + ``vectors.npz``, as `azc mine` writes them) by
    id (the only solved one when no id is given), or from a ``.npy`` vector (then `layer` is required)."""
    source = Path(source)
    if source.suffix == ".npy":
        if not layer:
            raise SteerError(f"{source}: a bare vector needs its layer (--layer)")
        return Concept(concept_id or source.stem, layer, {}, np.load(source).astype(np.float32).ravel())
    for name in (CONCEPTS, VECTORS):
        if not (source / name).is_file():
            raise SteerError(f"{source}: not a concept run directory (no {name}); or pass an .npy vector")
    try:
        concepts = ConceptSet.load(source, solved_only=True, ids=[concept_id] if concept_id else None)
    except InputError as exc:
        raise SteerError(str(exc)) from exc
    if len(concepts) != 1:
        raise SteerError(f"{source / VECTORS}: {len(concepts)} concepts; choose one with --concept "
                         f"({', '.join(concepts.ids[:10])}{' …' if len(concepts) > 10 else ''})")
    return dataclasses.replace(concepts[0], layer=layer) if layer else concepts[0]


@dataclass(frozen=True)
class SteerConfig(DictConfig):
    alphas: tuple[float, ...] = (0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0)
    beta: float = 1.0
    random_vectors: int = 3
    seed: int = 0
    batch_size: int = 256

    def __post_init__(self) -> None:
        # α = 0 (the plain network) is always the first point: every change is measured from it
        object.__setattr__(self, "alphas", tuple(sorted({0.0, *(float(a) for a in self.alphas)})))
        if any(a < 0 for a in self.alphas):
            raise ValueError(f"SteerConfig.alphas must be ≥ 0, got {self.alphas}")
        if self.random_vectors < 0:
            raise ValueError("SteerConfig.random_vectors must be ≥ 0")


def _curves(net: HookedNet, layer: str, vector: np.ndarray, planes: np.ndarray, legal: list[np.ndarray],
            answer_pos: np.ndarray, config: SteerConfig) -> dict[str, list[float]]:
    agree, prob, value = [], [], []
    for alpha in config.alphas:
        with steered(net, layer, vector, alpha, config.beta):
            logits, values = predict(net, planes, config.batch_size)
        probs = legal_softmax(logits, legal)
        agree.append(float(np.mean([int(np.argmax(p)) == a for p, a in zip(probs, answer_pos, strict=True)])))
        prob.append(float(np.mean([p[a] for p, a in zip(probs, answer_pos, strict=True)])))
        value.append(float(np.mean(values)))
    return {"agreement": agree, "answer_prob": prob, "value": value, "value_change": [v - value[0] for v in value]}


def amplification_check(net: HookedNet, layer: str, vector: np.ndarray, boards: Sequence[chess.Board],
                        answers: Sequence[chess.Move], config: SteerConfig | None = None) -> dict:
    """Policy agreement with `answers`, the answers' probability and the mean value (side to move's view) at each α,
    for the concept `vector` and for `config.random_vectors` random vectors of the same sparsity.

    Returns a JSON-ready dict: alphas, concept {agreement, answer_prob, value, value_change (vs α = 0)}, random
    (the same, averaged over the random vectors) and random_each, plus counts. Agreement at α = 0 is the plain
    network's top-1 agreement.
    """
    config = config or SteerConfig()
    if layer not in net.layer_names:
        raise SteerError(f"unknown layer {layer!r}; the network has: {', '.join(net.layer_names)}")
    dim = int(np.prod(net.layer_shape(layer)))  # type: ignore[attr-defined]
    vector = np.asarray(vector, dtype=np.float32).ravel()
    if vector.size != dim:
        raise SteerError(f"concept vector has {vector.size} entries, layer {layer} has {dim}")
    if len(boards) != len(answers) or not boards:
        raise SteerError(f"need as many answers as positions (got {len(boards)} positions, {len(answers)} answers)")
    fmt = net.format
    legal, answer_pos = [], []
    for i, (board, move) in enumerate(zip(boards, answers, strict=True)):
        moves, idx = fmt.legal_move_indices(board)
        if move not in moves:
            raise SteerError(f"position {i}: answer {move.uci()} is not legal in {board.fen()}")
        legal.append(idx)
        answer_pos.append(moves.index(move))
    planes = fmt.encode(list(boards))
    hooks_before = net.hook_count()
    net.eval()
    concept = _curves(net, layer, vector, planes, legal, np.array(answer_pos), config)
    randoms = [_curves(net, layer, random_like(vector, config.seed + k), planes, legal, np.array(answer_pos), config)
               for k in range(config.random_vectors)]
    assert net.hook_count() == hooks_before, "a steering hook was left attached"
    mean = {key: [float(np.mean([r[key][j] for r in randoms])) for j in range(len(config.alphas))]
            for key in concept} if randoms else {}
    return {"layer": layer, "alphas": list(config.alphas), "beta": config.beta, "positions": len(boards),
            "dim": dim, "nonzeros": int(np.count_nonzero(vector)), "concept": concept, "random": mean,
            "random_each": randoms, "config": config.to_dict()}
