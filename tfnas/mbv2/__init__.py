"""The TF-NAS family: the MobileNetV2-style space and everything that knows it.

``space`` (the space as data, torch-free), ``arch`` (the derived-architecture file), ``ops`` (MBConv blocks),
``net`` (the derived network), ``keys`` (its latency-table keys and the graphs timed for them), ``official``
(TF-NAS's published tables) and ``search`` (the differentiable search). The shared infrastructure below it
(tables, measurement, training, data, export) is in ``tfnas.latency``, ``tfnas.train``, ``tfnas.data`` and
``tfnas.export``.
"""
