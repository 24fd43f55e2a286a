"""Profile tables freeze to flash: a profile's rows are written with core.model's
numbers as constants of the profile's own module, so mpy-cross folds the whole table
into one constant object, which frozen code (or a ROMFS image) keeps in flash instead
of building it on the heap at import (the heat pump's rows: about 1.3 KB of heap).

The constants must be core.model's numbers (checked on CPython, where they are
module attributes), and the compiled module must build no row at run time (checked
on the .mpy of the vendored MicroPython's mpy-cross, tests/mp_real.py)."""
import importlib
import os
import subprocess
import sys

import pytest

import mp_real
from spot.core import model
from spot.profiles import registry

PROFILES = sorted(registry.PROFILES) + ["common"]
ROW_FIELDS = 9     # id, name, type, unit, access, mandatory, lo, hi, scale


def profile(name):
    return importlib.import_module("spot.profiles." + name)


@pytest.mark.parametrize("name", PROFILES)
def test_a_profiles_row_constants_are_core_models_numbers(name):
    mod = profile(name)
    own = [a for a in vars(mod) if a.startswith("_") and not a.startswith("__")
           and hasattr(model, a[1:])]
    assert own, "the rows use no constants of their own module"
    for attr in own:
        assert getattr(mod, attr) == getattr(model, attr[1:]), attr


@pytest.fixture(scope="module")
def tree():
    try:
        mp_real.interpreter()          # builds the tree's mpy-cross too
        return mp_real.source()[0]
    except mp_real.NoSource as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("name", PROFILES)
def test_a_profiles_rows_compile_to_one_constant(tree, name, tmp_path):
    out = str(tmp_path / (name + ".mpy"))
    subprocess.run([os.path.join(tree, "mpy-cross", "build", "mpy-cross"), "-O3", "-o", out,
                    profile(name).__file__], check=True)
    dis = subprocess.run([sys.executable, os.path.join(tree, "tools", "mpy-tool.py"), "-d", out],
                         capture_output=True, text=True, check=True).stdout
    assert "LOAD_CONST_OBJ ((" in dis            # the table, one constant
    assert "BUILD_TUPLE %d" % ROW_FIELDS not in dis   # and no row built at import
