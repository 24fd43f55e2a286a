"""Run SPOT's portable code under real MicroPython 1.27 from CPython tests.

MicroPython is the WebAssembly build from the npm package
@micropython/micropython-webassembly-pyscript, pinned in tests/micropython/package.json
and driven by tests/micropython/runner.mjs under Node.js. Install it once with:

    npm ci --prefix tests/micropython

What lands in MicroPython's file system:
  /lib/spot/...   the portable package: the repository's __init__.py, core/ and
                  profiles/ (ports/ and cloud_bridge/ do I/O and are not portable).
                  /lib is on MicroPython's sys.path, as on a board.
  /tests/...      everything under tests/portable/ (test modules, helpers such as
                  _data.py, data files such as spec_vectors.json), for
                  run_portable_tests(); the driver puts /tests first on sys.path and
                  makes it the working directory (a traceback's /tests/x.py is
                  tests/portable/x.py).

Garbage: this WebAssembly build frees memory only between top-level steps (gc.collect()
inside Python just requests a collection; see runner.mjs), so the driver runs one step
per test module and measure_heap() reads the heap between steps.

Report protocol of run_portable_tests() (one line each, on MicroPython's stdout):
  SPOT-MP RUN <module>.<test>              before a test starts
  SPOT-MP PASS <module>.<test>             it returned
  SPOT-MP FAIL <module>.<test> <error>     it raised; <error> is "Type: message" on one
  SPOT-MP | <traceback line>               line, followed by the traceback lines
  SPOT-MP TIME <module>.<test> <ms>        its run time, after PASS/FAIL
  SPOT-MP MODULE-FAIL <module> <error>     the module did not import (+ traceback lines)
  SPOT-MP DONE <passed> <failed>           the driver reached its end
Anything else a test prints between RUN and its result is kept as its output.
"""
import base64
import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
PORTABLE_DIR = TESTS_DIR / "portable"
RUNNER_DIR = TESTS_DIR / "micropython"
RUNNER = RUNNER_DIR / "runner.mjs"
PACKAGE = "@micropython/micropython-webassembly-pyscript"

PORTABLE_PACKAGES = ("core", "profiles")  # portable subpackages of spot, copied to /lib/spot
MP_TESTS_DIR = "/tests"
DEFAULT_TIMEOUT = 60.0  # seconds for one MicroPython process
MARK = "SPOT-MP"


class MicroPythonUnavailable(RuntimeError):
    """Node.js or the MicroPython npm package is not installed."""


class MicroPythonError(RuntimeError):
    """A MicroPython script raised (or the runner failed); .result holds the output."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


class MicroPythonTimeout(MicroPythonError):
    """The MicroPython process ran past its timeout and was killed."""


def _runner_command():
    node = shutil.which("node")
    if node is None:
        raise MicroPythonUnavailable("Node.js (node) is not on PATH; MicroPython tests need it")
    if not (RUNNER_DIR / "node_modules" / PACKAGE / "package.json").is_file():
        raise MicroPythonUnavailable(
            "MicroPython (npm package %s) is not installed; run: npm ci --prefix tests/micropython"
            % PACKAGE)
    return [node, str(RUNNER)]


def _file_entry(path):
    """JSON value for runner.mjs: text as str, anything not UTF-8 as {"base64": ...}."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def _tree_files(src_dir, dest_dir, pattern="*"):
    files = {}
    for path in sorted(src_dir.rglob(pattern)):
        rel = path.relative_to(src_dir)
        if not path.is_file() or "__pycache__" in rel.parts or path.suffix == ".pyc":
            continue
        files[dest_dir + "/" + rel.as_posix()] = _file_entry(path)
    return files


def spot_files():
    """MicroPython path -> text of the portable spot package (as deployed on a board).

    The repository root's __init__.py becomes /lib/spot/__init__.py; every .py under
    core/ and profiles/ (subpackages included) goes below /lib/spot/core/ and
    /lib/spot/profiles/.
    """
    files = {"/lib/spot/__init__.py": _file_entry(REPO_ROOT / "__init__.py")}
    for package in PORTABLE_PACKAGES:
        files.update(_tree_files(REPO_ROOT / package, "/lib/spot/" + package, "*.py"))
    return files


def portable_files(test_dir=PORTABLE_DIR):
    """MicroPython path -> content of every file under test_dir, placed below /tests."""
    return _tree_files(Path(test_dir), MP_TESTS_DIR)


def portable_module_names(test_dir=PORTABLE_DIR):
    """Names of the portable test modules (test_*.py directly in test_dir), sorted."""
    return sorted(p.stem for p in Path(test_dir).glob("test_*.py") if p.is_file())


def portable_test_names(module):
    """The rule both sides use: module-level callables named test_*, sorted by name."""
    return sorted(n for n in dir(module) if n.startswith("test_") and callable(getattr(module, n)))


def discover_portable_tests(test_dir=PORTABLE_DIR):
    """Import each portable test module on CPython; return (ids, import_errors).

    ids are "<module>.<test>" strings; import_errors maps a module name to the text of
    the exception that stopped it importing on CPython. Modules are loaded under private
    names so they never clash with pytest's own import of the same files.
    """
    test_dir = Path(test_dir)
    if str(test_dir) not in sys.path:  # helpers such as _data.py, as pytest does
        sys.path.append(str(test_dir))
    ids, errors = [], {}
    for name in portable_module_names(test_dir):
        spec = importlib.util.spec_from_file_location(
            "_spot_mp_discovery." + name, test_dir / (name + ".py"))
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # reported as a failing test by the caller
            errors[name] = "%s: %s" % (type(e).__name__, e)
            continue
        ids.extend(name + "." + t for t in portable_test_names(module))
    return ids, errors


def run_micropython(script, files=None, heapsize=None, timeout=DEFAULT_TIMEOUT, check=True):
    """Run script as __main__ in a fresh MicroPython; return a CompletedProcess (text).

    script is Python source, or a list of sources run as steps in one interpreter
    (shared globals; the heap is only collected between steps, see runner.mjs).
    files maps MicroPython paths to str (UTF-8 text) or {"base64": ...} (bytes); use
    spot_files() to make `import spot...` work. heapsize is the initial GC heap in bytes
    (None: the package default, 1 MiB; the heap grows on demand, so it is no limit).
    With check, a script that raises gives MicroPythonError (MicroPython's traceback in
    its message and in .result.stderr); a run past timeout gives MicroPythonTimeout.
    """
    cmd = _runner_command()
    job = {"script": script if isinstance(script, str) else list(script), "files": files or {}}
    if heapsize is not None:
        job["heapsize"] = int(heapsize)
    try:
        result = subprocess.run(cmd, input=json.dumps(job), capture_output=True, text=True,
                                encoding="utf-8", errors="replace", timeout=timeout,
                                cwd=str(RUNNER_DIR))
    except subprocess.TimeoutExpired as e:
        partial = subprocess.CompletedProcess(cmd, None, _text(e.stdout), _text(e.stderr))
        raise MicroPythonTimeout("MicroPython did not finish within %ss" % timeout,
                                 partial) from None
    if check and result.returncode != 0:
        raise MicroPythonError(
            "MicroPython exited with status %d:\n%s" % (result.returncode, result.stderr.rstrip()),
            result)
    return result


def _text(data):
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


_HEAP_READING = "_spot_heap[_spot_heap[2]] = gc.mem_alloc()\n_spot_heap[2] = 1\n"


def measure_heap(setup_code, files=None, heapsize=None, timeout=DEFAULT_TIMEOUT):
    """Bytes of MicroPython GC heap that setup_code leaves reachable, as an int.

    This build only collects garbage when a step returns to JavaScript (gc.collect()
    inside Python merely requests it; see runner.mjs), so the protocol is five steps in
    one fresh MicroPython (spot_files() installed when files is None):
        1  import gc; _spot_heap = [0, 0, 0]; gc.collect()
        2  _spot_heap[_spot_heap[2]] = gc.mem_alloc(); _spot_heap[2] = 1   -> before
        3  <setup_code, dedented>; gc.collect()
        4  the same source as step 2                                         -> after
        5  print("SPOT-MP HEAP", _spot_heap[1] - _spot_heap[0])
    Each reading follows a collection, and steps 2 and 4 are the same text, so their
    own compiled code cancels out. Counted: everything setup_code keeps reachable
    (globals, imported modules with their bytecode and interned names). Not counted:
    its temporaries and its own top-level code. The last "SPOT-MP HEAP" line is parsed,
    so setup_code may print.
    """
    steps = [
        "import gc\n_spot_heap = [0, 0, 0]\ngc.collect()\n",
        _HEAP_READING,
        textwrap.dedent(setup_code).strip("\n") + "\ngc.collect()\n",
        _HEAP_READING,
        "print(%r, _spot_heap[1] - _spot_heap[0])\n" % (MARK + " HEAP"),
    ]
    result = run_micropython(steps, spot_files() if files is None else files,
                             heapsize=heapsize, timeout=timeout)
    values = [line.split()[-1] for line in result.stdout.splitlines()
              if line.startswith(MARK + " HEAP ")]
    if not values:
        raise MicroPythonError("no heap reading in MicroPython's output", result)
    return int(values[-1])


# --- portable test driver -------------------------------------------------------------

_DRIVER_SETUP = '''\
import gc, io, os, sys, time
sys.path.insert(0, %(tests_dir)r)
os.chdir(%(tests_dir)r)
_MARK = %(mark)r
_counts = [0, 0]  # passed, failed


def _one_line(e):
    text = " ".join(str(e).split())
    name = type(e).__name__
    line = name + ": " + text if text else name
    return line[:500]


def _traceback(e):
    buf = io.StringIO()
    sys.print_exception(e, buf)
    for line in buf.getvalue().split("\\n"):
        if line:
            print(_MARK, "|", line)


def _run_module(module_name):
    try:
        module = __import__(module_name)
    except BaseException as e:
        print(_MARK, "MODULE-FAIL", module_name, _one_line(e))
        _traceback(e)
        return
    names = sorted(n for n in dir(module)
                   if n.startswith("test_") and callable(getattr(module, n)))
    for name in names:
        test_id = module_name + "." + name
        print(_MARK, "RUN", test_id)
        start = time.ticks_ms()
        try:
            getattr(module, name)()
        except BaseException as e:
            _counts[1] += 1
            print(_MARK, "FAIL", test_id, _one_line(e))
            _traceback(e)
        else:
            _counts[0] += 1
            print(_MARK, "PASS", test_id)
        print(_MARK, "TIME", test_id, time.ticks_diff(time.ticks_ms(), start))
'''


def portable_driver_script(module_names):
    """MicroPython steps that run every test_* of the given modules (see module doc).

    One step per module, so the heap is collected between modules (see runner.mjs).
    """
    steps = [_DRIVER_SETUP % {"tests_dir": MP_TESTS_DIR, "mark": MARK}]
    steps += ["_run_module(%r)\ngc.collect()\n" % name for name in module_names]
    steps.append("print(_MARK, 'DONE', _counts[0], _counts[1])\n")
    return steps


class MicroPythonOutcome:
    """What MicroPython reported for one test."""

    def __init__(self, test_id):
        self.test_id = test_id
        self.status = None  # "PASS", "FAIL" or None (started, never finished)
        self.error = ""  # one-line error for FAIL
        self.traceback = []  # MicroPython traceback lines for FAIL
        self.output = []  # what the test printed
        self.ms = None

    def __repr__(self):
        return "<MicroPythonOutcome %s %s>" % (self.test_id, self.status)


class PortableReport:
    """Parsed output of one run_portable_tests() process."""

    def __init__(self, stdout, stderr="", returncode=0, timed_out=False):
        self.stdout, self.stderr = stdout, stderr
        self.returncode, self.timed_out = returncode, timed_out
        self.outcomes = {}  # test id -> MicroPythonOutcome
        self.module_errors = {}  # module name -> (one-line error, traceback lines)
        self.done = None  # (passed, failed) from the DONE line, None if it never came
        self._parse(stdout)

    def _parse(self, stdout):
        prefix = MARK + " "
        current = None  # list collecting traceback lines
        running = None  # outcome whose RUN came last
        for line in stdout.splitlines():
            if not line.startswith(prefix):
                if running is not None and running.status is None:
                    running.output.append(line)
                continue
            kind, _, rest = line[len(prefix):].partition(" ")
            if kind == "|":
                if current is not None:
                    current.append(rest)
                continue
            current = None
            if kind == "RUN":
                running = self.outcomes.setdefault(rest, MicroPythonOutcome(rest))
            elif kind in ("PASS", "FAIL"):
                test_id, _, error = rest.partition(" ")
                outcome = self.outcomes.setdefault(test_id, MicroPythonOutcome(test_id))
                outcome.status, outcome.error = kind, error
                current = outcome.traceback
            elif kind == "TIME":
                test_id, _, ms = rest.partition(" ")
                if test_id in self.outcomes and ms.isdigit():
                    self.outcomes[test_id].ms = int(ms)
            elif kind == "MODULE-FAIL":
                module, _, error = rest.partition(" ")
                tb = []
                self.module_errors[module] = (error, tb)
                current = tb
            elif kind == "DONE":
                passed, failed = rest.split()
                self.done = (int(passed), int(failed))

    def reported(self):
        """Ids of the tests that got a PASS or FAIL."""
        return {t for t, o in self.outcomes.items() if o.status is not None}

    def explain(self, test_id):
        """Why test_id did not pass, for an assertion message."""
        outcome = self.outcomes.get(test_id)
        if outcome is not None and outcome.status == "FAIL":
            lines = ["MicroPython: FAIL " + outcome.error] + outcome.traceback
            if outcome.output:
                lines += ["--- printed by the test ---"] + outcome.output
            return "\n".join(lines)
        module = test_id.partition(".")[0]
        if module in self.module_errors:
            error, tb = self.module_errors[module]
            return "\n".join(["MicroPython could not import %s: %s" % (module, error)] + tb)
        if outcome is not None:
            why = "started but never reported a result"
        else:
            why = "was never run"
        return "\n".join(
            ["MicroPython %s %s (%s)" % (test_id, why, self.how_it_ended())]
            + (outcome.output if outcome is not None else []))

    def how_it_ended(self):
        if self.timed_out:
            return "the process timed out"
        if self.done is None:
            tail = self.stderr.strip().splitlines()[-15:]
            return "the process ended early, status %s: %s" % (self.returncode, "\n".join(tail))
        return "the driver finished normally"


def run_portable_tests(test_dir=PORTABLE_DIR, heapsize=None, timeout=DEFAULT_TIMEOUT):
    """Run every test module of test_dir in ONE MicroPython process; a PortableReport.

    The spot package goes to /lib/spot, test_dir's whole tree to /tests. Never raises
    for failing tests or a crashed/timed-out process: that is in the report.
    """
    files = spot_files()
    files.update(portable_files(test_dir))
    script = portable_driver_script(portable_module_names(test_dir))
    try:
        result = run_micropython(script, files, heapsize=heapsize, timeout=timeout, check=False)
    except MicroPythonTimeout as e:
        return PortableReport(e.result.stdout, e.result.stderr, None, timed_out=True)
    return PortableReport(result.stdout, result.stderr, result.returncode)
