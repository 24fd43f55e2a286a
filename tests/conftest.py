"""Fixtures shared by several test modules."""
import pytest

from mosquitto import Broker


@pytest.fixture
def broker(tmp_path):
    """A real mosquitto with its own directory on a free loopback port, stopped after."""
    d = tmp_path / "mosquitto"
    d.mkdir()
    b = Broker(str(d))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def prosody():
    """A real Prosody (STARTTLS with a test CA) on a free loopback port, stopped after."""
    from prosody import Prosody
    p = Prosody()
    try:
        yield p.start()
    finally:
        p.close()
