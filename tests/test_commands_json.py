"""The API's JSON of a list of commands (a group command's answer) is each command's own,
though commands that differ only in id and device share the rest of it."""
import dataclasses
import json

from spot.cloud_bridge import http_views as V
from spot.cloud_bridge.store import queued_commands
from spot.core import frame as F
from spot.core.services import HEAT_PUMP

T0 = 1_700_000_000


def test_commands_json_is_command_json_of_each_command_in_order():
    group = queued_commands([1, 2, 3], ["hp-1", "hp-2", "hp-3"], HEAT_PUMP, F.WRITE, {6: 1},
                            "op", T0 + 0.5, T0 + 60, 5)
    float_body = queued_commands([4], ["hp-4"], HEAT_PUMP, F.WRITE, {6: 1.0}, "op", T0 + 0.5,
                                 T0 + 60, 5)   # equal to {6: 1}, yet its JSON differs
    sent = dataclasses.replace(group[0], id=5, device="hp-5", status="sent", mid=7,
                               sent_at=T0 + 1)
    commands = group + float_body + [sent] + group[1:]
    got = V.commands_json(commands)
    assert json.dumps(got) == json.dumps([V.command_json(c) for c in commands])
    assert [(j["id"], j["device"]) for j in got] == [(c.id, c.device) for c in commands]
