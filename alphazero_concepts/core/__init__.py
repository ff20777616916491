"""The bottom layer: plumbing every other package may use and that imports nothing else from the package.

    config.py     `DictConfig` (to_dict / from_dict refusing unknown keys) and `check_fields` (values vs annotations)
    files.py      atomic writes, JSON / JSON-lines reading and writing
    rundir.py     `RunDir`: every artifact path of a run directory (the only place their names are spelled)
    puzzleset.py  the puzzle-set schema the puzzle exporter writes and the study app reads
"""
