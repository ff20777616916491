"""Probes per layer and per checkpoint (what is learned, when, where), and the concept amplification check.

Modules: `targets` (what a probe predicts, computed from `chess.Board`s), `probes` (linear / MLP / L1 probes,
splits, `run_probes`), `static_series` (mined static concepts per layer and checkpoint, `azc static`), `figures`
(heatmaps, curves, bars), `steer` (amplification check), `commands` (CLI).
"""
