"""The pipeline's stages, one module each (the `Stage` protocol is in `base.py`, the config schema in `config.py`).

    roots.py         positions where the teacher and a weaker checkpoint disagree
    rollouts.py      chosen and sub-par lines per root (resume unit: a chunk of roots)
    collect.py       activations of every rollout state at the mined layers
    mine.py          one dynamic concept per root and layer (resume unit: a root)
    teachability.py  the self-play pool and the teachability filter
    novelty.py       human/machine bases, novelty scores, the funnel, the kept concepts' prototypes
    puzzles.py       puzzles from the prototypes, and their exports
    report.py        the HTML report over the run directory

The drivers these modules define (`root_records`, `search_roots`/`run_rollouts`, `rollout_positions`,
`mine_roots`) are the only implementations of their stage: `azc roots/rollouts/collect/mine`, the pipeline and
the distributed backends (`alphazero_concepts.distributed.stages`) all call them.
"""
