"""The MicroPython harness (tests/mp_harness.py, tests/micropython/runner.mjs) itself.

Small throw-away portable modules are written to tmp_path (never tests/portable) and run
through the same driver that runs the real portable tests.
"""
import pytest

import mp_harness as mp


def _write(tmp_path, name, text):
    (tmp_path / name).write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    """One MicroPython run of a few tiny modules covering each kind of outcome."""
    d = tmp_path_factory.mktemp("portable")
    _write(d, "test_tiny.py", (
        "def helper():\n"
        "    raise RuntimeError('helpers are not tests')\n"
        "\n"
        "def test_ok():\n"
        "    print('chatter from test_ok')\n"
        "    assert helper is not None\n"
        "\n"
        "def test_broken():\n"
        "    assert 1 + 1 == 3, 'arithmetic\\nstill works'\n"
        "\n"
        "def test_exits():\n"
        "    import sys\n"
        "    sys.exit(0)\n"
        "\n"
        "test_not_callable = 5\n"))
    _write(d, "test_badimport.py", "import module_that_does_not_exist\n\ndef test_never():\n    pass\n")
    _write(d, "test_data.py", (
        "def test_reads_data_relative_to_cwd():\n"
        "    with open('sub/data.txt') as f:\n"
        "        assert f.read() == 'tiny data\\n'\n"
        "\n"
        "def test_reads_binary_data():\n"
        "    with open('blob.bin', 'rb') as f:\n"
        "        assert f.read() == bytes(range(256))\n"))
    (d / "sub").mkdir()
    _write(d / "sub", "data.txt", "tiny data\n")
    (d / "blob.bin").write_bytes(bytes(range(256)))
    return mp.run_portable_tests(d)


def test_passing_test_is_reported_as_pass(tiny_report):
    assert tiny_report.outcomes["test_tiny.test_ok"].status == "PASS"


def test_failing_test_is_reported_as_fail_with_one_line_error_and_traceback(tiny_report):
    outcome = tiny_report.outcomes["test_tiny.test_broken"]
    assert outcome.status == "FAIL"
    assert outcome.error == "AssertionError: arithmetic still works"
    assert outcome.traceback[0] == "Traceback (most recent call last):"
    assert any('test_tiny.py", line 9, in test_broken' in line for line in outcome.traceback)
    assert "AssertionError: arithmetic" in tiny_report.explain("test_tiny.test_broken")


def test_system_exit_inside_a_test_fails_it_and_the_run_goes_on(tiny_report):
    assert tiny_report.outcomes["test_tiny.test_exits"].status == "FAIL"
    assert tiny_report.outcomes["test_tiny.test_exits"].error.startswith("SystemExit")
    assert tiny_report.done is not None


def test_only_callables_named_test_are_run(tiny_report):
    tiny = sorted(t for t in tiny_report.outcomes if t.startswith("test_tiny."))
    assert tiny == ["test_tiny.test_broken", "test_tiny.test_exits", "test_tiny.test_ok"]


def test_what_a_test_prints_is_kept_with_it(tiny_report):
    assert tiny_report.outcomes["test_tiny.test_ok"].output == ["chatter from test_ok"]


def test_module_that_fails_to_import_is_reported_and_explains_its_tests(tiny_report):
    error, traceback = tiny_report.module_errors["test_badimport"]
    assert error == "ImportError: no module named 'module_that_does_not_exist'"
    assert traceback
    assert "could not import test_badimport" in tiny_report.explain("test_badimport.test_never")


def test_data_files_text_and_binary_are_copied_and_cwd_is_their_folder(tiny_report):
    assert tiny_report.outcomes["test_data.test_reads_data_relative_to_cwd"].status == "PASS"
    assert tiny_report.outcomes["test_data.test_reads_binary_data"].status == "PASS"


def test_done_line_counts_every_result(tiny_report):
    assert tiny_report.done == (3, 2)
    assert tiny_report.returncode == 0


def test_portable_test_still_running_at_timeout_is_explained(tmp_path):
    _write(tmp_path, "test_hang.py", (
        "def test_a_quick():\n    pass\n\n"
        "def test_b_forever():\n    while True:\n        pass\n"))
    report = mp.run_portable_tests(tmp_path, timeout=3)
    assert report.timed_out and report.done is None
    assert report.outcomes["test_hang.test_a_quick"].status == "PASS"
    assert report.outcomes["test_hang.test_b_forever"].status is None
    why = report.explain("test_hang.test_b_forever")
    assert "started but never reported" in why and "timed out" in why


def test_script_output_is_returned():
    assert mp.run_micropython("print(6 * 7)").stdout == "42\n"


def test_exception_in_script_raises_with_micropython_traceback():
    with pytest.raises(mp.MicroPythonError) as info:
        mp.run_micropython("def f():\n    raise ValueError('boom')\nf()\n")
    assert "ValueError: boom" in str(info.value)
    assert 'line 2, in f' in info.value.result.stderr
    assert info.value.result.returncode == 1


def test_exception_without_check_returns_the_failed_result():
    result = mp.run_micropython("print('before')\nraise KeyError(3)\n", check=False)
    assert result.returncode == 1
    assert result.stdout == "before\n"
    assert "KeyError: 3" in result.stderr


def test_steps_share_globals_and_the_first_that_raises_ends_the_run():
    result = mp.run_micropython(
        ["x = 2\n", "print(x * 21)\n", "raise ValueError('step 3')\n", "print('never')\n"],
        check=False)
    assert result.stdout == "42\n"
    assert result.returncode == 1
    assert "ValueError: step 3" in result.stderr


def test_garbage_is_collected_between_steps_not_within_one():
    # This is the WebAssembly build's behaviour that measure_heap and the driver rely on.
    result = mp.run_micropython([
        "import gc\nstart = gc.mem_alloc()\n"
        "for i in range(50):\n    bytearray(4000)\n"
        "gc.collect()\nwithin = gc.mem_alloc() - start\n",
        "print(within >= 50 * 4000, gc.mem_alloc() - start < 4000)\n"])
    assert result.stdout == "True True\n"


def test_runaway_script_is_killed_at_timeout():
    with pytest.raises(mp.MicroPythonTimeout):
        mp.run_micropython("print('started')\nwhile True:\n    pass\n", timeout=2)


def test_spot_core_compat_imports_under_micropython_and_knows_it():
    result = mp.run_micropython(
        "import sys\nimport spot.core.compat as c\n"
        "print(sys.implementation.name, sys.implementation.version[:2], c.MICROPYTHON, c.const(7))\n",
        mp.spot_files())
    assert result.stdout == "micropython (1, 27) True 7\n"


def test_spot_files_hold_the_package_core_and_profiles_but_not_ports():
    files = mp.spot_files()
    expected = {"/lib/spot/__init__.py"}
    for package in ("core", "profiles"):
        expected |= {"/lib/spot/%s/%s" % (package, p.relative_to(mp.REPO_ROOT / package).as_posix())
                     for p in (mp.REPO_ROOT / package).rglob("*.py") if "__pycache__" not in p.parts}
    assert set(files) == expected
    assert files["/lib/spot/core/compat.py"] == (mp.REPO_ROOT / "core" / "compat.py").read_text("utf-8")


def test_heapsize_sets_the_initial_heap():
    script = "import gc\nprint(gc.mem_alloc() + gc.mem_free())\n"
    small = int(mp.run_micropython(script, heapsize=64 * 1024).stdout)
    large = int(mp.run_micropython(script, heapsize=4 * 1024 * 1024).stdout)
    assert large - small > 3 * 1024 * 1024


def test_invalid_heapsize_is_refused_by_the_runner():
    with pytest.raises(mp.MicroPythonError, match="heapsize must be a positive integer"):
        mp.run_micropython("pass", heapsize=0)


def test_measure_heap_counts_what_setup_keeps_alive():
    assert mp.measure_heap("pass") == 0
    kept = mp.measure_heap("blob = bytearray(4000)")
    assert 4000 <= kept < 4200


def test_measure_heap_ignores_temporaries_and_setup_prints():
    assert mp.measure_heap("print('noise 123')\nx = bytearray(4000)\nx = None\n") == 0


def test_missing_npm_install_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setattr(mp, "RUNNER_DIR", tmp_path)
    with pytest.raises(mp.MicroPythonUnavailable, match="npm ci --prefix tests/micropython"):
        mp.run_micropython("pass")
