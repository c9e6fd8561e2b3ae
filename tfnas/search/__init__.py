"""Search algorithms: TF-NAS (``tfnas.search.tfnas``) and the DARTS family (``tfnas.search.darts``).

Each algorithm owns its supernet, its sampling rules and its derivation; the
shared trainer pieces (optimizer and schedule builders, checkpoints, timers)
live in ``tfnas.search.common``.
"""
