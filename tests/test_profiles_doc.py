"""docs/profiles.md is generated from the profile tables and stays in sync;
every object has a meaning, every enum its value labels, every mapping a
real object."""
import os
import subprocess
import sys

from spot.core import model
from spot.profiles import registry, meanings, mappings_doc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN = os.path.join(ROOT, "tools", "gen_profiles_doc.py")


def _profiles():
    return [registry.load(n) for n in registry.names()]


def _keys():
    return {(m.SERVICE, r[model.ID]) for m in _profiles() for r in m.OBJECTS}


def test_docs_profiles_md_is_up_to_date():
    run = subprocess.run([sys.executable, GEN, "--check"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_check_mode_fails_on_a_stale_doc(tmp_path, monkeypatch):
    sys.path.insert(0, os.path.dirname(GEN))
    try:
        import gen_profiles_doc as gen
    finally:
        sys.path.pop(0)
    stale = tmp_path / "profiles.md"
    stale.write_text(gen.render().replace("SG-Ready", "SG Ready"), encoding="utf-8")
    monkeypatch.setattr(gen, "DOC", str(stale))
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0


def test_every_object_has_a_meaning():
    missing = [k for k in _keys() if not meanings.MEANINGS.get(k, "").strip()]
    assert missing == []


def test_meanings_name_only_existing_objects():
    assert set(meanings.MEANINGS) - _keys() == set()


def test_every_enum_has_labels_for_its_whole_range():
    for mod in _profiles():
        for r in mod.OBJECTS:
            if r[model.TYPE] != model.ENUM or r[model.ACCESS] == model.X:
                continue
            labels = meanings.VALUES.get((mod.SERVICE, r[model.ID]))
            assert labels, "%s.%s has no value labels" % (mod.NAME, r[model.NAME])
            assert all(r[model.LO] <= v <= r[model.HI] for v in labels), r[model.NAME]
            if r[model.HI] - r[model.LO] < 16 and mod.NAME != "device_info":
                assert sorted(labels) == list(range(r[model.LO], r[model.HI] + 1)), r[model.NAME]


def test_enum_constants_in_profile_modules_match_the_labels():
    # e.g. battery.BALANCE == 3 and VALUES says 3 is "balance (self-consumption)"
    from spot.profiles import battery, ev_charger, generator, grid, heat_pump
    V = meanings.VALUES
    assert V[(battery.SERVICE, 8)][battery.BALANCE].startswith("balance")
    assert V[(ev_charger.SERVICE, 6)][ev_charger.FINISHED] == "finished"
    assert V[(generator.SERVICE, 10)][generator.RUNNING] == "running"
    assert V[(grid.SERVICE, 1)][grid.CEASE] == "cease to energise"
    assert V[(heat_pump.SERVICE, 6)][heat_pump.SG_BLOCKED].startswith("blocked")


def test_mappings_name_only_existing_objects_and_profiles():
    assert set(mappings_doc.OBJECTS) - _keys() == set()
    assert set(mappings_doc.PROFILES) == {m.SERVICE for m in _profiles()}


def test_doc_lists_every_object_of_every_profile():
    sys.path.insert(0, os.path.dirname(GEN))
    try:
        import gen_profiles_doc as gen
    finally:
        sys.path.pop(0)
    text = gen.render()
    for mod in _profiles():
        sec = text.split("## %s (service" % mod.NAME)[1].split("\n## ")[0]
        for r in mod.OBJECTS:
            assert "| %d | `%s` |" % (r[model.ID], r[model.NAME]) in sec, (mod.NAME, r[model.NAME])
