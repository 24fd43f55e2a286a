"""PostgreSQL latest values, schema 5: the upsert that leaves the usual frame unmerged.

Schema 3 keeps a device's latest points in one row of `latest_device`, merged by
the plpgsql function spot_latest_merge (per object the greatest t, the stored
point on equal t); that call per device was about a third of the upsert. Schema 5
keeps beside the points two columns that let the statement see, without a call,
that the merge would give the incoming points unchanged:

- `keys`: the points' (service, object) as service << 32 | object, in the
  points' order (by service, then object);
- `t_max`: the greatest t of the points.

When a device's incoming points have the stored keys and one time later than
t_max, every stored point is older than its incoming one: the merge's result is
the incoming points (and their fleet points, and their alarm flag). Otherwise
the merge runs as before, and the keys become the sorted union of both sides',
t_max the greater of both (the merge keeps the greatest t of every object, so
the greatest of all is kept too). A row whose keys are NULL (made before schema
5 and not migrated) always merges and keeps NULL keys.

    UPSERT_ONE_FRAME    # the batch's frames just COPYed, one per device: the fast path
    one_frame_upsert(frames)     # the same from other frames (pg_ingest: an INSERT's)
    upsert_grouped(rows, keyed)  # the other upserts: schema 3's, or 5's keeping keys and t_max
    FLEET_POINT         # SQL: the points kept in latest_device.fleet
"""
from .store_fleet import alarm_point_sql, fleet_point_sql

# the points kept in latest_device.fleet: what the fleet figures read, and alarms
FLEET_POINT = "(%s OR %s)" % (fleet_point_sql(), alarm_point_sql("postgresql", keys_only=True))
# one point's key, ordered as the points are (service 0-255, object 0-2^31-1)
KEY = "(l.service::bigint << 32 | l.object)"


def _pct(sql):
    """sql with its % doubled (the statements take psycopg placeholders)."""
    return sql.replace("%", "%%")


# the keys after a merge: the stored ones when the batch brought none new, else the
# sorted union (NULL stays NULL: such a row is not known, it always merges)
_KEYS = ("keys = CASE WHEN latest_device.keys = excluded.keys THEN excluded.keys "
         "WHEN latest_device.keys IS NOT NULL THEN ARRAY(SELECT DISTINCT k FROM "
         "unnest(latest_device.keys || excluded.keys) AS k ORDER BY k) END, "
         "t_max = greatest(latest_device.t_max, excluded.t_max)")
# the incoming points (one time, excluded.t_max) replace every stored point
_FAST = "latest_device.keys = excluded.keys AND latest_device.t_max < excluded.t_max"

# The latest values of a batch whose frames were just COPYed into telemetry_frame,
# each device in one frame (the usual batch): the frames read back by their keys in
# device order (the order every writer takes the rows' locks in), each frame's points
# built from its own arrays (no grouping of the batch's values), and the merge only
# where the fast path does not hold. Parameters: frame_keys(frames). A frame's objects
# are stored ascending (pg_binary.frames_of) and unnest reads an array in its order,
# so the points, fleet points and keys come out in key order with no sort per frame
# (were they not, nothing would be wrong: the keys would differ from the stored
# ones, and the merge, which sorts, would run).
def one_frame_upsert(frames):
    """The upsert of the latest values from `frames`, FROM items naming k (device,
    service, t) and f (objects, vals), one frame per device, in device order."""
    return (
        "INSERT INTO latest_device (device, points, fleet, alarm, keys, t_max) "
        "SELECT k.device, p.points, p.fleet, p.alarm, p.keys, k.t "
        "FROM " + frames + " "
        "CROSS JOIN LATERAL (SELECT "
        "array_agg(ROW(l.service, l.object, l.t, l.value)::latest_point) AS points, "
        "COALESCE(array_agg(ROW(l.service, l.object, l.t, l.value)::latest_point) "
        "FILTER (WHERE " + _pct(FLEET_POINT) + "), '{}') AS fleet, "
        "bool_or(" + _pct(alarm_point_sql("postgresql")) + ") FILTER (WHERE "
        + _pct(alarm_point_sql("postgresql", keys_only=True)) + ") AS alarm, "
        "array_agg(" + KEY + ") AS keys "
        "FROM (SELECT k.service, v.object, k.t, v.value "
        "FROM unnest(f.objects, f.vals) AS v (object, value)) l) p "
        "ON CONFLICT (device) DO UPDATE SET "
        "points = CASE WHEN " + _FAST + " THEN excluded.points "
        "ELSE spot_latest_merge(latest_device.points, excluded.points) END, "
        "fleet = CASE WHEN cardinality(excluded.fleet) = 0 THEN latest_device.fleet "
        "WHEN " + _FAST + " THEN excluded.fleet "
        "ELSE spot_latest_merge(latest_device.fleet, excluded.fleet) END, "
        "alarm = CASE WHEN excluded.alarm IS NULL THEN latest_device.alarm "
        "WHEN " + _FAST + " THEN excluded.alarm "
        "ELSE spot_latest_alarm(spot_latest_merge(latest_device.fleet, excluded.fleet)) END, "
        + _KEYS)


UPSERT_ONE_FRAME = one_frame_upsert(
    "(SELECT * FROM unnest(%b::text[], %b::smallint[], %b::float8[]) "
    "AS k (device, service, t) ORDER BY device) k "
    "CROSS JOIN LATERAL (SELECT f.objects, f.vals FROM telemetry_frame f "
    "WHERE f.device = k.device AND f.service = k.service AND f.t = k.t OFFSET 0) f")


def upsert_grouped(rows, keyed):
    """The upsert of latest_device from `rows`, a FROM item naming its rows `l`
    (device, service, object, t, value), grouped by device and merged with the stored
    points (schema 3); with `keyed` also writing keys and t_max (schema 5, always
    merging: the fast path is UPSERT_ONE_FRAME's)."""
    point = "ROW(l.service, l.object, l.t, l.value)::latest_point"
    return (
        "INSERT INTO latest_device (device, points, fleet, alarm"
        + (", keys, t_max" if keyed else "") + ") "
        "SELECT l.device, array_agg(" + point + " ORDER BY l.service, l.object), "
        "COALESCE(array_agg(" + point + " ORDER BY l.service, l.object) "
        "FILTER (WHERE " + _pct(FLEET_POINT) + "), '{}'), "
        "bool_or(" + _pct(alarm_point_sql("postgresql")) + ") FILTER (WHERE "
        + _pct(alarm_point_sql("postgresql", keys_only=True)) + ")"
        + (", array_agg(" + KEY + " ORDER BY l.service, l.object), max(l.t)" if keyed else "")
        + " FROM " + rows + " GROUP BY l.device ORDER BY l.device "
        "ON CONFLICT (device) DO UPDATE "
        "SET points = spot_latest_merge(latest_device.points, excluded.points), "
        # the fleet points merged as the points are (a batch without any keeps them)
        "fleet = CASE WHEN cardinality(excluded.fleet) = 0 THEN latest_device.fleet "
        "ELSE spot_latest_merge(latest_device.fleet, excluded.fleet) END, "
        # the flag computed again only when the batch brings an alarm object
        "alarm = CASE WHEN excluded.alarm IS NULL THEN latest_device.alarm "
        "ELSE spot_latest_alarm(spot_latest_merge(latest_device.fleet, excluded.fleet)) END"
        + (", " + _KEYS if keyed else ""))
