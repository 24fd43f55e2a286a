"""A plugin's plans on devices, shared by the plugins that carry out a standard's
events as plans (OpenADR 2.0b and 3, IEEE 2030.5): has a device's owner taken
over what a plan governs (their answer is the standard's opt-out for that
device), and withdrawing a plan from a device that may have gone.
"""
from ...core import frame as F
from ...core.plans import PUSH, CANCEL
from ...core.services import PLANS
from ..service import BadRequest, Forbidden


async def owner_command(ctx, event):
    """The Command of a bridge "command queued" event if the device's owner gave it
    (not this plugin), else None."""
    if event.get("type") != "command" or event.get("status") != "queued":
        return None
    cmd = await ctx.bridge.store.get_command(event["id"])
    if cmd.actor == ctx.actor:
        return None
    if await ctx.bridge.store.role_of(cmd.device, cmd.actor) != "owner":
        return None
    return cmd


async def overridden_events(ctx, active, event, now):
    """(cmd, [(event id, record)]): the owner's command of a bridge event and the
    running events of `active` (records with "devices": {device: plan} and "end")
    whose plan on that device it takes over; (None, []) when there are none."""
    if event.get("type") != "command" or event.get("status") != "queued":
        return None, []
    device = event.get("device")
    hits = [(eid, rec) for eid, rec in active.items()
            if device in rec["devices"] and rec["end"] > now]
    if not hits:
        return None, []
    cmd = await owner_command(ctx, event)
    if cmd is None:
        return None, []
    return cmd, [(eid, rec) for eid, rec in hits if overrides(cmd, rec["devices"][device])]


def overrides(cmd, plan):
    """Does the command take over what the plan [id, start, expiry, primacy, entries] governs?"""
    body = cmd.body
    if cmd.service == PLANS and cmd.op == F.INVOKE and type(body) is list and body:
        return body[0] in (PUSH, CANCEL)
    if cmd.op == F.WRITE and isinstance(body, dict):
        objs = plan[4].get(cmd.service) or {}
        return any(int(k) in objs for k in body)
    return False


async def withdraw_plan(ctx, device, pid):
    """Cancel plan pid on device; a refusal (device deleted, pairing gone) is
    logged, not raised: the event is over for that device either way."""
    try:
        await ctx.cancel_plan(device, pid)
    except (Forbidden, BadRequest, LookupError) as e:
        ctx.log.warning("%s: could not withdraw plan %d of %s: %s", ctx.name, pid, device, e)


async def withdraw_event(ctx, active, event_id):
    """An event is over: take its record {"plan_id", "devices", ...} out of `active`
    and withdraw its plan from each of its devices. The record, or None if the
    event was not running."""
    rec = active.pop(event_id, None)
    if rec is not None:
        for device in sorted(rec["devices"]):
            await withdraw_plan(ctx, device, rec["plan_id"])
    return rec
