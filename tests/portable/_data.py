"""Open a portable test's data file the same way on CPython and MicroPython.

Data files (e.g. spec_vectors.json) live next to the test modules in tests/portable/.
  CPython:     this module is tests/portable/_data.py, so the files are found next
               to its __file__, whatever the working directory.
  MicroPython: the harness (tests/mp_harness.py) copies all of tests/portable/,
               data files and this module included, to /tests/, puts /tests first on
               sys.path and makes it the working directory; __file__ is then
               /tests/_data.py and the files are next to it again.
Usage in a portable test:
    from _data import open_data
    with open_data("spec_vectors.json") as f:
        vectors = json.load(f)
"""


def _here():
    path = globals().get("__file__") or ""
    cut = max(path.rfind("/"), path.rfind("\\"))
    return path[:cut + 1] if cut >= 0 else ""  # "" means: the working directory


def data_path(name):
    """Path of the data file called name (relative to tests/portable/)."""
    return _here() + name


def open_data(name, mode="r"):
    """Open the data file called name; mode "r" (text, UTF-8) or "rb" (bytes)."""
    if "b" in mode:
        return open(data_path(name), mode)
    return open(data_path(name), mode, encoding="utf-8")
