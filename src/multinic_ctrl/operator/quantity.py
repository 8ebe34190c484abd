"""Kubernetes resource quantities (pure): strict parsing of what users write, lenient parsing of what the
apiserver returns, and numeric comparison.

Invariants:

* **strict in** - a spec quantity is a plain decimal with an optional SI or binary suffix (`200m`, `0.5`, `256Mi`,
  `20Gi`); no signs, exponents or nano/micro units; CPU may use `m`, memory and storage may not; each kind has
  bounds, so nothing overflows the apiserver's int64 or asks for absurd sizes;
* **compare by value** - the apiserver canonicalises quantities (`1000m` reads back as `1`, `0.5` as `500m`,
  `1024Mi` as `1Gi`), so drift compares parsed values, never strings, else a canonicalised field would look
  drifted forever.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from .validation import fail, show

Kind = Literal["cpu", "memory", "storage"]

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}
# The CRD uses the same expressions (tests/unit/operator/test_crd.py keeps them in step).
CPU_PATTERN = r"([0-9]+m|[0-9]{1,4}(\.[0-9]{1,3})?)"
BYTES_PATTERN = r"[0-9]+(\.[0-9]+)?(k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?"
_LENIENT = re.compile(r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE]([+-]?[0-9]+))?")
_BOUNDS: dict[Kind, tuple[Decimal, Decimal]] = {
    "cpu": (Decimal("0.001"), Decimal(1024)),
    "memory": (Decimal(2**20), Decimal(2**40)),  # 1Mi .. 1Ti
    "storage": (Decimal(2**20), Decimal(2**50)),  # 1Mi .. 1Pi
}


def parse(text: str) -> Decimal:
    """Any quantity the apiserver may return (signs, exponents, all suffixes); ValueError if malformed."""
    match = _LENIENT.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a quantity")
    number, suffix, exponent = match.groups()
    try:
        value = Decimal(number)
    except InvalidOperation:  # pragma: no cover - the expression admits only decimal numbers
        raise ValueError(f"{text!r} is not a quantity") from None
    if exponent is not None:
        return value.scaleb(int(exponent))
    if suffix in _BINARY:
        return value * _BINARY[suffix]
    return value * _DECIMAL[suffix or ""]


def equal(a: object, b: object) -> bool:
    """Two quantities (strings or ints) with the same value; False if either is not a quantity."""
    try:
        return parse(str(a)) == parse(str(b))
    except ValueError:
        return False


def quantity(value: Any, path: str, kind: Kind, *, default: str) -> str:
    """A spec quantity, validated for its kind; YAML integers (`cpu: 2`) are accepted and returned as text."""
    if value is None:
        value = default
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        fail(path, "must be a quantity such as 500m, 512Mi or 20Gi")
    pattern = CPU_PATTERN if kind == "cpu" else BYTES_PATTERN
    if re.fullmatch(pattern, value, flags=re.ASCII) is None:
        example = "200m or 1.5" if kind == "cpu" else "512Mi or 20Gi"
        fail(path, f"{show(value)} is not a {kind} quantity such as {example}")
    low, high = _BOUNDS[kind]
    if not low <= parse(value) <= high:
        fail(path, f"{show(value)} is out of range for {kind}")
    return value
