"""Bridge configuration (cloud_bridge/config.py): defaults, TOML, flags, and the
settings that must be refused before anything starts."""
import os

import pytest

from spot.cloud_bridge import config as C
from spot.cloud_bridge.store import parse_url

PSK = '[dtls]\npsk = { sim = "00112233445566778899aabbccddeeff" }\n'


def test_a_relative_data_directory_puts_the_store_under_the_working_directory(tmp_path,
                                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    kind, path = parse_url(C.load(None, data="spot-data").store_url)
    assert kind == "sqlite"
    assert path == os.path.join(str(tmp_path), "spot-data", "bridge.db")


def test_a_data_directory_with_url_characters_in_its_name_is_used_as_it_is(tmp_path):
    data = str(tmp_path / "run #1?x%41")
    kind, path = parse_url(C.load(None, data=data).store_url)
    assert path == os.path.join(data, "bridge.db")


def test_an_explicit_store_url_wins_over_the_data_directory(tmp_path):
    url = "sqlite://" + str(tmp_path / "elsewhere.db")
    assert C.load(None, data="spot-data", store=url).store_url == url


def test_dtls_on_the_any_address_is_refused_with_what_to_set(tmp_path):
    cfg = tmp_path / "bridge.toml"
    cfg.write_text('[bridge]\ncoap = "0.0.0.0:5683"\n' + PSK)
    with pytest.raises(ValueError, match="coap = .*5683.*any-address"):
        C.load(str(cfg))


def test_dtls_on_a_concrete_address_is_accepted(tmp_path):
    cfg = tmp_path / "bridge.toml"
    cfg.write_text('[bridge]\ncoap = "127.0.0.1:5683"\n' + PSK)
    assert C.load(str(cfg)).psk == {"sim": "00112233445566778899aabbccddeeff"}


def test_an_unknown_setting_is_refused_with_its_name(tmp_path):
    cfg = tmp_path / "bridge.toml"
    cfg.write_text('[bridge]\ncoapp = "127.0.0.1:5683"\n')
    with pytest.raises(ValueError, match=r"unknown setting \[bridge\] coapp"):
        C.load(str(cfg))


def test_commands_in_flight_must_be_a_positive_integer(tmp_path):
    cfg = tmp_path / "bridge.toml"
    cfg.write_text('[bridge]\ncommands_in_flight = 0\n')
    with pytest.raises(ValueError, match="commands_in_flight"):
        C.load(str(cfg))


def test_dtls_without_its_library_is_refused_with_what_to_install(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "DTLSSocket", None)   # as if not installed
    cfg = tmp_path / "bridge.toml"
    cfg.write_text('[bridge]\ncoap = "127.0.0.1:5683"\n' + PSK)
    with pytest.raises(ValueError, match=r"\[dtls\] psk: .*pip install 'spot-runtime\[dtls\]'"):
        C.load(str(cfg))


def test_an_unknown_plain_coap_policy_is_refused_with_the_choices(tmp_path):
    cfg = tmp_path / "bridge.toml"
    cfg.write_text('[registration]\nplain = "sometimes"\n')
    with pytest.raises(ValueError, match=r"\[registration\] plain must be one of off, loopback, open"):
        C.load(str(cfg))


def test_registration_settings_are_read_from_their_section(tmp_path):
    cfg = tmp_path / "bridge.toml"
    cfg.write_text('[registration]\nplain = "open"\nallow = ["hp-*"]\nsource_burst = 2\n')
    c = C.load(str(cfg))
    assert (c.reg_plain, c.reg_allow, c.reg_source_burst) == ("open", ["hp-*"], 2)


def test_refresh_limits_default_to_a_burst_of_4_then_one_per_30_s_and_are_read(tmp_path):
    cfg = tmp_path / "bridge.toml"
    cfg.write_text("[registration]\nrefresh_burst = 2\nrefresh_interval = 5.5\n")
    d = C.load(None)
    assert (d.reg_refresh_burst, d.reg_refresh_interval) == (4, 30)
    c = C.load(str(cfg))
    assert (c.reg_refresh_burst, c.reg_refresh_interval) == (2, 5.5)


@pytest.mark.parametrize("setting, value", [("refresh_burst", "0"), ("refresh_burst", "1.5"),
                                            ("refresh_burst", '"4"'),
                                            ("refresh_interval", "0"),
                                            ("refresh_interval", "-30"),
                                            ("refresh_interval", '"30"')])
def test_a_refresh_limit_that_is_not_a_positive_amount_is_refused_by_name(tmp_path, setting,
                                                                         value):
    cfg = tmp_path / "bridge.toml"
    cfg.write_text("[registration]\n%s = %s\n" % (setting, value))
    with pytest.raises(ValueError, match=r"\[registration\] %s must be" % setting):
        C.load(str(cfg))


def test_coap_fast_is_on_by_default_and_false_in_toml_turns_it_off(tmp_path):
    cfg = tmp_path / "bridge.toml"
    cfg.write_text("[bridge]\ncoap_fast = false\n")
    assert C.load(None).coap_fast is True
    assert C.load(str(cfg)).coap_fast is False


def test_coap_fast_that_is_not_a_boolean_is_refused(tmp_path):
    cfg = tmp_path / "bridge.toml"
    cfg.write_text('[bridge]\ncoap_fast = "yes"\n')
    with pytest.raises(ValueError, match="coap_fast"):
        C.load(str(cfg))


def test_mqtt_max_packet_is_64_kib_by_default_and_read_from_the_mqtt_section(tmp_path):
    cfg = tmp_path / "bridge.toml"
    cfg.write_text("[mqtt]\nmax_packet = 20000\n")
    assert C.load(None).mqtt_max_packet == 65536
    assert C.load(str(cfg)).mqtt_max_packet == 20000


@pytest.mark.parametrize("value", ["100", "268435461", '"64k"', "65536.0"])
def test_mqtt_max_packet_outside_what_mqtt_allows_or_not_a_whole_number_is_refused(
        tmp_path, value):
    cfg = tmp_path / "bridge.toml"
    cfg.write_text("[mqtt]\nmax_packet = %s\n" % value)
    with pytest.raises(ValueError, match=r"\[mqtt\] max_packet must be a whole number of bytes "
                                         r"from 1024 to 268435460"):
        C.load(str(cfg))
