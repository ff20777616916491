"""Puzzle sets from kept concepts (METHOD.md §5): candidates, checks, the puzzle book, exports, the `azc puzzles` CLI.

    candidates.py  prototypes.jsonl reader, dedupe, the teacher's batched deep search → `Candidate`
    engine.py      Stockfish cross-check through chess.engine → `EngineVerdict`
    checks.py      `PuzzleChecks` and every per-puzzle check; `human_policy_probs`
    rating.py      the rating estimate
    book.py        `make_book` / `make_puzzles` → `PuzzleBook` + `BuildReport`; `load_book`
    build.py       the stage over a run directory, resumable (`build_run`)
    export.py      PGN, EPD, Lichess CSV, JSON, HTML booklet
    commands.py    `register(app)`: ``azc puzzles build`` / ``azc puzzles export``

Nothing is re-exported here: import from the module that defines it.
"""
