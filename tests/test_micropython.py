"""Every portable test (tests/portable/test_*.py) passes under real MicroPython 1.27 too.

All portable modules run in ONE MicroPython process (see tests/mp_harness.py); each
of their test functions then shows up here as its own pytest case, named
"<module>.<test>", that fails with MicroPython's traceback.
Needs Node.js and `npm ci --prefix tests/micropython`.
"""
import pytest

import mp_harness as mp

PORTABLE_IDS, CPYTHON_IMPORT_ERRORS = mp.discover_portable_tests()


@pytest.fixture(scope="session")
def mp_report():
    return mp.run_portable_tests()


@pytest.mark.parametrize("test_id", PORTABLE_IDS)
def test_passes_under_micropython(mp_report, test_id):
    outcome = mp_report.outcomes.get(test_id)
    if outcome is None or outcome.status != "PASS":
        pytest.fail(mp_report.explain(test_id), pytrace=False)


def test_every_portable_module_imports_under_cpython():
    assert CPYTHON_IMPORT_ERRORS == {}


def test_micropython_imports_every_portable_module(mp_report):
    failed = {m: e for m, (e, _tb) in mp_report.module_errors.items()}
    assert failed == {}


def test_micropython_ran_to_the_end(mp_report):
    assert mp_report.done is not None, mp_report.how_it_ended()
    assert mp_report.returncode == 0, mp_report.stderr


def test_micropython_reported_exactly_the_tests_cpython_finds(mp_report):
    cpython = set(PORTABLE_IDS)
    micropython = mp_report.reported()
    assert sorted(cpython - micropython) == [], "missing under MicroPython"
    assert sorted(micropython - cpython) == [], "only under MicroPython"


def test_done_line_counts_match_the_reported_tests(mp_report):
    statuses = [o.status for o in mp_report.outcomes.values()]
    assert mp_report.done == (statuses.count("PASS"), statuses.count("FAIL"))
