"""The `spot` command line works as the README writes it and prints what a person
would write: frames given as separate hex words, ranges without None or 10000000.0."""
import re

from test_cli import run


def test_decode_takes_the_readme_line_unquoted():
    r = run("decode", *"12 10 00 2a a1 07 18 d7".split())
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["SPOT v1 WRITE service heat_pump (0x10) mid 42",
                                     "{7 /flow_setpoint = 21.5 Cel/: 215}"]


def test_decode_takes_the_frame_quoted_as_one_word_too():
    assert run("decode", "12 10 00 2a a1 07 18 d7").stdout == \
        run("decode", *"12 10 00 2a a1 07 18 d7".split()).stdout


def profile_line(text, name):
    return next(line for line in text.splitlines() if re.search(r"\s%s\s" % name, line))


def test_profiles_print_ranges_as_a_person_writes_them():
    objects = [line for line in run("profiles").stdout.splitlines() if line.startswith("  ")]
    assert objects and not any("None" in line or re.search(r"\d\.0\b", line)
                               for line in objects)
    hp = run("profiles", "heat_pump").stdout
    assert profile_line(hp, "flow_setpoint").endswith(" 20 to 70 Cel")
    assert profile_line(hp, "energy_in").endswith(" >= 0 Wh")
    assert profile_line(hp, "p").endswith(" -10 to 10 MW")
    assert profile_line(hp, "thermal_power").endswith(" 0 to 100 kW")
    info = run("profiles", "device_info").stdout
    assert profile_line(info, "vendor").endswith(" up to 32 characters")
