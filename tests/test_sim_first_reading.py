"""A simulated device's first report is its plant's state, not the zeros of a model
never stepped (which drew a false spike at the start of every plot)."""
import pytest

from spot.core import frame as F
from spot.ports.cpython.fleet import Fleet

T0 = 1713171600   # 2024-04-15 09:00 UTC: heating, some sun, cars charging
P = 1             # active power, object 1 of every device profile


def first_two_powers(profile):
    fleet = Fleet({profile: 1}, seed=3, t0=T0, telemetry=60)
    seen = []
    for t in (T0, T0 + 60):
        for _, frames in fleet.advance(t):
            for _, frame in frames:
                _, sid, _, body = F.decode(frame)
                if sid >= 0x10 and P in body[1]:
                    seen.append(body[1][P])
    return seen


@pytest.mark.parametrize("profile", ["heat_pump", "pv_inverter", "generator"])
def test_the_first_reported_power_is_the_plants_not_a_zero(profile):
    first, second = first_two_powers(profile)
    assert first != 0
    assert abs(first - second) <= 0.25 * abs(second)
