"""Status conditions as the Kubernetes API conventions define them (pure; shared by every reconciler).

Invariants:

* **stable transitions** - `lastTransitionTime` moves only when a condition's status flips (True/False/Unknown);
  a reason or message change keeps it, so recomputing an unchanged status yields an identical document and a
  reconciler that writes status only when it changed never wakes its own watch in a loop;
* **nothing forgotten** - conditions an update does not speak about keep their previous value;
* **stable order** - conditions come out in the caller's order (unknown types last, in input order).

Time is an argument, never read here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def rfc3339(moment: dt.datetime) -> str:
    """A UTC timestamp in the form the apiserver uses (`metav1.Time`: seconds, `Z`)."""
    return moment.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Condition:
    """One condition; `status` None means `Unknown`."""

    type: str
    status: bool | None
    reason: str
    message: str

    @property
    def status_text(self) -> str:
        return "Unknown" if self.status is None else ("True" if self.status else "False")


def merge_conditions(
    previous: Sequence[Mapping[str, Any]] | None,
    new: Sequence[Condition],
    *,
    generation: int,
    now: dt.datetime,
    order: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The new condition list: `new` over `previous`, with transition times kept unless the status flipped."""
    old = {c.get("type"): c for c in previous or ()}
    merged: list[dict[str, Any]] = []
    for cond in new:
        status = cond.status_text
        prior = old.get(cond.type)
        since = prior.get("lastTransitionTime") if prior and prior.get("status") == status else None
        merged.append(
            {
                "type": cond.type,
                "status": status,
                "reason": cond.reason,
                "message": cond.message,
                "lastTransitionTime": since or rfc3339(now),
                "observedGeneration": generation,
            }
        )
    spoken = {c.type for c in new}
    merged.extend(dict(c) for t, c in old.items() if t not in spoken)
    rank = {name: i for i, name in enumerate(order)}
    merged.sort(key=lambda c: rank.get(str(c.get("type")), len(rank)))  # stable: unknown types keep their input order
    return merged
