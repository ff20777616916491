"""Write the tour notebooks from the cells below (`python notebooks/make_notebooks.py`), so that they are reviewed
as plain Python here and executed in CI (`pytest --nbmake notebooks/`). Each runs in well under a minute on 2 CPU
cores: small samples, few simulations. Outputs are not stored; CI executes them.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """\
import warnings

import numpy as np
import torch

torch.set_num_threads(2)
warnings.filterwarnings("ignore")
%matplotlib inline
import matplotlib.pyplot as plt"""

TOUR = [
    new_markdown_cell("""\
# 01 · Quickstart tour

The bundled teacher network, its activations, one **static** concept and one **dynamic** concept mined with the
sparse-vector LP (METHOD.md §1–2), and the positions that score highest on it (its prototypes).
`azc quickstart` runs the whole method end to end; this notebook opens the pieces."""),
    new_code_cell(SETUP),
    new_code_cell("""\
from alphazero_concepts.nn.loading import bundled_series, load_network

series = bundled_series()
net, meta = load_network("teacher")
print(meta.name, "of", series.names, "—", f"{sum(p.numel() for p in net.parameters()):,} parameters")
print(net.layer_names)"""),
    new_markdown_cell("## Activations with `run_with_cache`"),
    new_code_cell("""\
import chess

boards = [chess.Board(), chess.Board("r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3")]
planes = torch.from_numpy(net.format.encode(boards))
with torch.inference_mode():
    (logits, value), cache = net.run_with_cache(planes, ["stem", "block2", "block5"])
for name, act in cache.items():
    print(f"{name:8s} {tuple(act.shape)}")
print("value (side to move):", value.numpy().round(3))"""),
    new_markdown_cell("""\
## Static concepts: pieces on the board

Positions from seeded random games; a sparse vector `v` is mined at each layer so that `v·z` is larger for
positions with the concept than without, and scored on held-out pairs (the paper reports ≈ 99% for piece concepts)."""),
    new_code_cell("""\
from alphazero_concepts.concepts.validation import ValidationConfig, piece_concepts

static = piece_concepts(net, ValidationConfig(positions=100, layers=("stem", "block5"), pairs=40))
for concept, result in static["concepts"].items():
    accs = [row["test_pair_accuracy"] for row in result["layers"].values()]
    print(f"{concept:35s}", "  ".join(f"{layer} {acc:.3f}" for layer, acc in zip(result["layers"], accs)))
    plt.plot(list(result["layers"]), accs, "o-", label=concept)
plt.legend(fontsize=7)
plt.ylim(0, 1); plt.ylabel("held-out pair accuracy"); plt.show()"""),
    new_markdown_cell("""\
## A dynamic concept from one root

The teacher searches a position, follows its chosen line, and branches onto clearly worse (sub-par) lines; the
concept vector separates the chosen line's states from the sub-par lines' states."""),
    new_code_cell("""\
from alphazero_concepts.concepts.mining import mine_rollout
from alphazero_concepts.search.mcts import MCTS, MCTSConfig, NetEvaluator
from alphazero_concepts.search.rollouts import RolloutConfig, rollouts
from alphazero_concepts.search.roots import bundled_openings

name, root = bundled_openings()[3]
mcts = MCTS(NetEvaluator(net), MCTSConfig(simulations=48), rng=np.random.default_rng(0))
rollout = rollouts(mcts, [root], RolloutConfig(length=6, max_subpar=3, simulations=48))[0]
print(name, root.fen())
print("chosen line:", root.variation_san([chess.Move.from_uci(m) for m in rollout.chosen.moves]))
for line in rollout.subpar:
    print(f"  sub-par from ply {line.branch}: {line.branch_reason}")
record, v = mine_rollout(net, rollout, "block5")
print({k: record.get(k) for k in ("id", "status", "nonzeros", "n_constraints", "violated")})"""),
    new_code_cell("""\
from alphazero_concepts.concepts.activations import latents

if v is not None:
    for k, line in enumerate([rollout.chosen, *rollout.subpar]):
        s = latents(net, rollout.boards(line), "block5") @ v
        plt.plot(s, "o-" if k == 0 else "x--", label="chosen" if k == 0 else f"sub-par {k}")
    plt.xlabel("ply from the root"); plt.ylabel("v·z"); plt.legend(); plt.title(record["id"]); plt.show()"""),
    new_markdown_cell("## Prototypes: the positions that score highest on the concept"),
    new_code_cell("""\
from IPython.display import SVG, display
from alphazero_concepts.concepts.samples import human_sample, layer_latents
from alphazero_concepts.filters.validation import bundled_human_games

sample = human_sample(bundled_human_games(), 300, seed=0)
if v is not None:
    scores = layer_latents(net, sample, ["block5"])["block5"] @ v
    top = np.argsort(-scores)[:3]
    for i in top:
        print(f"v·z = {scores[i]:.2f}  {sample.fens[i]}")
        display(SVG(chess.svg.board(sample.board(int(i)), size=220)))"""),
]

FILTERS = [
    new_markdown_cell("""\
# 02 · Filters and the funnel

Novelty (is the concept in the machine's latent space more than in the human one?) and teachability (can an
earlier checkpoint learn it from its prototypes?), METHOD.md §3–4, on small samples of the bundled series."""),
    new_code_cell(SETUP),
    new_code_cell("""\
from alphazero_concepts.filters.novelty import NoveltyConfig, build_basis, spectrum_figure
from alphazero_concepts.concepts.samples import SelfPlaySampleConfig, human_sample, layer_latents, selfplay_sample
from alphazero_concepts.filters.validation import bundled_human_games
from alphazero_concepts.nn.loading import bundled_series, load_network

net, meta = load_network("teacher")
human = human_sample(bundled_human_games(), 300, seed=0)
machine = selfplay_sample(net, SelfPlaySampleConfig(positions=300, seed=0))
zh = layer_latents(net, human, ["block5"])["block5"]
zm = layer_latents(net, machine, ["block5"])["block5"]
basis = build_basis(zh, zm, "block5", NoveltyConfig(positions=300, max_components=256))
print(basis.summary())"""),
    new_code_cell("""\
import tempfile
from pathlib import Path
from IPython.display import Image, display

path = spectrum_figure([basis], Path(tempfile.mkdtemp()) / "spectrum.png")
display(Image(filename=str(path)))"""),
    new_markdown_cell("""\
## Novelty scores: planted vectors

A vector inside the machine-only span scores `s_k > 0` for every k; one inside the human span does not."""),
    new_code_cell("""\
machine_only = basis.machine[:, 0] - basis.human @ (basis.human.T @ basis.machine[:, 0])
human_dir = basis.human[:, 0]
rng = np.random.default_rng(0)
for name, vec in [("machine-only", machine_only), ("human top direction", human_dir),
                  ("random", rng.standard_normal(basis.dim))]:
    s = basis.score(vec.astype(np.float32))
    print(f"{name:20s} novel={s.novel!s:5s} min s_k={s.min_score:+.3f}")"""),
    new_markdown_cell("""\
## Teachability of one concept

Prototypes = the top 2.5% of a self-play pool by `v·z`; the student is the latest earlier checkpoint that
agrees with the teacher on fewer than 20% of them (none → *already known*)."""),
    new_code_cell("""\
from alphazero_concepts.filters.stages import series_students
from alphazero_concepts.filters.teachability import Pool, TeachConfig, pool_scores, teach_rows, top_prototypes

students = series_students(bundled_series(), meta)
pool = Pool(machine, net, students)
config = TeachConfig(top_fraction=0.1, epochs=2, bootstrap=300, random_test_min=40)
scores = pool_scores(pool, {"block5": machine_only[None, :].astype(np.float32)})["block5"][:, 0]
protos = top_prototypes(scores, config.top_fraction)
result = teach_rows(pool, protos, config, concept_id="machine-only", layer="block5")
print(result.status, result.student, "agreements:", {k: round(v, 2) for k, v in result.agreements.items()})
if result.status == "ok":
    print(f"lift {result.lift:+.3f}, 95% CI [{result.ci[0]:+.3f}, {result.ci[1]:+.3f}], kept={result.kept}")"""),
    new_markdown_cell("""\
## The funnel

Roots → mined → solved → teachable → novel → kept, beside the paper's shares (≈ 97.6% fail teachability, ≈ 27%
of the rest fail novelty). Here from a run directory if `azc quickstart` has been run, else from the concept
above."""),
    new_code_cell("""\
import json

from alphazero_concepts.filters.funnel import PAPER, funnel, funnel_figure
from alphazero_concepts.concepts.conceptset import Concept

run = Path("../runs/quickstart")
if (run / "funnel.json").is_file():
    result_f = json.loads((run / "funnel.json").read_text())
else:
    entry = Concept("block5/planted", "block5", {}, machine_only.astype(np.float32))
    result_f = funnel([entry], {entry.id: result.to_record()},
                      {entry.id: {"id": entry.id, **basis.score(machine_only.astype(np.float32)).to_record()}},
                      roots=1)
print(json.dumps(result_f["total"], indent=1))
print("paper:", PAPER)
path = funnel_figure(result_f, Path(tempfile.mkdtemp()) / "funnel.png")
display(Image(filename=str(path)))"""),
]

PROBES = [
    new_markdown_cell("""\
# 03 · Probes: what, when, where

Linear probes for human concepts (material, mobility, check, …) at every layer (**where**) of two checkpoints of
the series (**when**), on a small seeded sample of positions (`alphazero_concepts.probing`)."""),
    new_code_cell(SETUP),
    new_code_cell("""\
from alphazero_concepts.nn.loading import bundled_series
from alphazero_concepts.probing.probes import ProbeConfig, run_probes, score_table
from alphazero_concepts.probing.sampling import SampleConfig, sample_positions
from alphazero_concepts.probing.targets import BOARD_TARGETS

series = bundled_series()
first, last = series.names[0], series.names[-1]
boards, groups = sample_positions(SampleConfig(positions=240, seed=0))
targets = [BOARD_TARGETS[name] for name in ("material", "mobility", "in_check")]
layers = ("stem", "block1", "block3", "block5")
rows = run_probes({first: lambda: series.load(first)[0], last: lambda: series.load(last)[0]}, boards, targets,
                  ProbeConfig(layers=layers, block=""))
print(len(rows), "probe rows")"""),
    new_code_cell("""\
fig, axes = plt.subplots(1, len(targets), figsize=(4 * len(targets), 3), sharey=False)
for ax, target in zip(axes, targets):
    table = score_table(rows, target.name)
    for checkpoint, by_layer in table.items():
        ax.plot(list(by_layer), list(by_layer.values()), "o-", label=checkpoint)
    ax.set_title(f"{target.name} ({target.kind})"); ax.set_xlabel("layer")
axes[0].set_ylabel("R² (continuous) / accuracy (binary)"); axes[0].legend(fontsize=7)
plt.tight_layout(); plt.show()"""),
]

STUDY = [
    new_markdown_cell("""\
# 04 · Analysing a study's results

A study teaches concepts with puzzles (phases 1–2) and tests on unseen puzzles (phase 3). Here the answers are
**simulated** (a learning effect is planted for the taught concepts) on the demo puzzle set, and analysed with the
same statistics as a real study (`alphazero_concepts.study.stats`), beside the paper's four grandmasters."""),
    new_code_cell(SETUP),
    new_code_cell("""\
from alphazero_concepts.study.demo import demo_puzzle_set

puzzle_set = demo_puzzle_set(n_concepts=6, train_per_concept=2, test_per_concept=3, seed=0)
concepts = sorted({p["concept"] for p in puzzle_set["puzzles"]})
print(puzzle_set["name"], len(puzzle_set["puzzles"]), "puzzles,", len(concepts), "concepts")"""),
    new_code_cell("""\
rng = np.random.default_rng(0)
trials = []
for pid in range(1, 9):  # 8 simulated participants, each taught half of the concepts
    taught = set(rng.choice(concepts, size=len(concepts) // 2, replace=False))
    skill = rng.uniform(0.2, 0.5)
    for p in puzzle_set["puzzles"]:
        condition = "taught" if p["concept"] in taught else "control"
        for phase in (1, 3):  # phase 1: the learning puzzles before teaching; phase 3: the unseen test puzzles
            if (phase == 1) != (p["split"] == "train"):
                continue
            rate = skill + (0.25 if phase == 3 and condition == "taught" else 0.0)
            trials.append({"participant_id": pid, "participant_name": f"P{pid}", "participant_phase": 4,
                           "phase": phase, "concept": p["concept"], "concept_label": p["concept_label"],
                           "condition": condition, "answered": True, "correct": bool(rng.random() < rate)})
print(len(trials), "simulated trials")"""),
    new_code_cell("""\
from alphazero_concepts.study.stats import analyse, figures

results = analyse(trials, seed=0, n_boot=2000)
for name, p in (("gain", results.gain), ("transfer", results.transfer), ("paper", results.paper)):
    print(f"{name:9s} {p.label}: mean diff {p.mean_diff:+.3f}, 95% CI [{p.ci_low:+.3f}, {p.ci_high:+.3f}], "
          f"n = {p.n}")"""),
    new_code_cell("""\
from IPython.display import Image, display

for name, png in figures(results).items():
    print(name)
    display(Image(data=png))"""),
]


def write(name: str, cells: list) -> Path:
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    path = HERE / name
    nbformat.write(nb, path)
    return path


def main() -> None:
    for name, cells in (("01_quickstart_tour.ipynb", TOUR), ("02_filters_and_funnel.ipynb", FILTERS),
                        ("03_probes.ipynb", PROBES), ("04_study_results.ipynb", STUDY)):
        print("wrote", write(name, cells))


if __name__ == "__main__":
    main()
