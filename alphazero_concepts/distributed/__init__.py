"""Scale-out: the same sharded stages run in-process, on local processes, or across a Ray cluster.

`backend` holds the execution backends (`local`, `ray`) and the one-writer shard store; `stages` the sharded
pipeline stages (rollouts, activation collection, dynamic mining); `selfplay` the Ray actors of self-play
(workers, replay buffer, weight store); `commands` the `azc distributed …` commands and the `--backend` options.
Ray is optional (`pip install ".[distributed]"`); nothing here imports it until a Ray backend is asked for.
"""
