"""Domain adapters for gaussspec, importable as ``gaussspec.adapters.<name>``.

Each adapter builds :class:`gaussspec.GaussianKernel` objects for one domain and imports only the
core's public names; the core never imports an adapter.
"""
