"""The toolkit's base layer, shared by ``profilers`` (the device side) and ``tfnas`` (the host side).

Knows neither of them and needs no torch: the root of user errors (``errors``), progress of long loops
(``progress``), exclusive write locks (``lock``), strict JSON parsing (``strict_json``) and atomic writes
(``atomic``). A module here imports only the standard library and other modules here.
"""
