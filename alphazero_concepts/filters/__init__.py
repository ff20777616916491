"""Filters over mined concepts (METHOD.md §3–4): novelty (the machine-only region M − H) and teachability.

- `novelty`: human and machine bases per layer, numerical ranks, the novelty score s_k over a k grid.
- `teachability`: prototypes, student selection, teaching by KL, the 2×2 table and the lift with a bootstrap CI.
- `funnel`: roots → mined → solved → teachable → novel → kept, per layer, beside the paper's numbers.
- `rundir`: reading concepts and writing filter results in a run directory (atomic, resumable).
- `commands`: the `azc novelty …` and `azc filter …` commands.
"""
