"""Arena: matches between checkpoints and Stockfish, an Elo ladder, and Strategic Test Suite scores.

Modules: `players` (who moves), `match` (concurrent games of one pairing), `elo` (Bradley–Terry fit),
`ladder` (a series' resumable ladder, `ladder.json` and plot), `sts` (STS scoring), `commands` (`azc arena`,
`azc sts`).
"""
