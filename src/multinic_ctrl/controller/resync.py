"""Resync slots per OpenStack identity (pure): configs that share credentials come due together.

In `immediate` mode every config re-reads OpenStack periodically. If each counted its interval from its own
last sync, the configs of one project would come due at scattered moments and each cost an observation. Put
on common slots instead - `slot_k = epoch + phase(identity) + k * interval` - they are queued at the same
moment, and one observation serves the whole project (`openstack/coalesce.py`): a resync round costs one
observation per project, whatever the number of configs.

The phase is derived from the identity by a stable hash (no per-process key: it must agree across restarts
and replicas, and it is no secret - the password is not an input), which also spreads different projects
evenly over the interval, so a cluster with many projects does not send them all at once.

A config reconciled late in a round (a long queue) is due at the next slot like the others; only one that
synced less than `MIN_GAP` before a slot waits for the one after, so that a slot is never taken twice (see
`TOLERANCE`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math

from multinic_ctrl.openstack import Credentials

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MIN_GAP = dt.timedelta(milliseconds=500)
BUDGET_INTERVAL = dt.timedelta(minutes=5)
"""The default interval before observations were shared: one observation per config every 5 minutes."""
TOLERANCE = dt.timedelta(milliseconds=250)
"""A slot counts as reached this much early: a config is requeued for its slot by the work queue's monotonic
clock, and the wall clock may have drifted a little from it in between (NTP slews at most 0.5 ms/s: 15 ms in
30 s). Smaller than MIN_GAP, so a config that synced on the early side of a slot is not due at it again."""


def identity_phase(credentials: Credentials, interval: dt.timedelta) -> dt.timedelta:
    """Where in each interval this identity's slots lie: a stable hash of who asks whom, in [0, interval)."""
    fields = {
        "auth_url": credentials.auth_url.rstrip("/"),
        "username": credentials.username,
        "user_domain_name": credentials.user_domain_name,
        "project_id": credentials.project_id,
        "project_name": credentials.project_name,
        "project_domain_name": credentials.project_domain_name,
        "network_endpoint": credentials.network_endpoint,
        "compute_endpoint": credentials.compute_endpoint,
        "region": credentials.region,
        "interface": credentials.interface,
    }
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return interval * fraction


def next_slot(after: dt.datetime, interval: dt.timedelta, phase: dt.timedelta) -> dt.datetime:
    """The first slot at least `MIN_GAP` after `after`."""
    if interval <= dt.timedelta(0):
        raise ValueError("interval must be positive")
    earliest = after + MIN_GAP
    base = EPOCH + phase
    k = math.ceil((earliest - base) / interval)
    slot = base + k * interval
    while slot < earliest:  # float rounding of the division, either way
        slot += interval
    while slot - interval >= earliest:
        slot -= interval
    return slot


def budgeted_interval(interval: dt.timedelta, configs_in_group: int) -> dt.timedelta:
    """The default resync interval of one identity: as fresh as `interval`, never costlier than before.

    One observation serves all configs of an identity, so the old budget - one observation per config every
    `BUDGET_INTERVAL` - buys an identity with n configs an observation every `BUDGET_INTERVAL / n`. Spending
    exactly that budget (but no faster than `interval`, no slower than `BUDGET_INTERVAL`) makes every cluster
    cost at most what it cost before, and less once a project has more configs than `BUDGET_INTERVAL /
    interval`: 10 at the 30 s default. A single-config project keeps its 5 minutes (plus notifications, if
    configured), where a flat 30 s would have cost it ten times more. Used only when RESYNC_INTERVAL is not set.
    """
    n = max(1, configs_in_group)
    return max(interval, min(BUDGET_INTERVAL, BUDGET_INTERVAL / n))
