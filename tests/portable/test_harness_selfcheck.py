"""The portable-test harness itself: package, data files and runtime seen alike on both sides."""
import json
import sys

from _data import open_data


def test_spot_package_imports_with_its_version_string():
    import spot
    assert isinstance(spot.__version__, str)
    assert spot.__version__.count(".") == 2


def test_data_file_next_to_the_tests_reads_as_utf8_json():
    with open_data("harness_selfcheck.json") as f:
        data = json.load(f)
    assert data["name"] == "harness-selfcheck"
    assert data["numbers"] == [1, -2, 3000000000]
    assert data["text"] == "Gr\u00fc\u00dfe \u26a1"


def test_data_file_opens_as_bytes_too():
    with open_data("harness_selfcheck.json", "rb") as f:
        raw = f.read()
    assert isinstance(raw, bytes)
    assert "\u26a1".encode("utf-8") in raw


def test_compat_reports_the_runtime_it_runs_on():
    from spot.core.compat import MICROPYTHON
    assert MICROPYTHON == (sys.implementation.name == "micropython")
