"""The credentials plan: stored values win per key, the recovery copy restores a deleted Secret, and a password that
would have to be generated over existing data is refused."""

from __future__ import annotations

import pytest

from multinic_ctrl.operator.credentials import credentials_secret
from multinic_ctrl.operator.names import MANAGED_BY_LABEL, PROTECTED_LABEL
from multinic_ctrl.operator.recovery import RECOVERY_SECRET, plan_credentials, recovery_secret
from tests.unit.operator.support import OWNER, ROOT_PW, USER_PW, spec_of

STORED = {"root-password": "stored-root", "password": "stored-user"}
INLINE = {"database": {"credentials": {"rootPassword": ROOT_PW, "password": USER_PW}}}


def rng(n: int) -> bytes:
    return b"\x01" * n


@pytest.mark.parametrize(
    ("stored", "recovery", "data", "expect"),
    [
        # fresh install: generated, Secret and copy created
        (None, None, False, {"create": True, "copy": True, "restored": (), "generated": ("root-password", "password")}),
        # steady state: nothing to write
        (STORED, STORED, True, {"create": False, "copy": False, "restored": (), "generated": ()}),
        # Secret deleted: recreated from the copy, even though the data exists
        (None, STORED, True, {"create": True, "copy": False, "restored": ("root-password", "password")}),
        # copy deleted: rewritten from the Secret
        (STORED, None, True, {"create": False, "copy": True, "restored": ()}),
        # copy edited by someone: follows the Secret again
        (STORED, {"root-password": "x", "password": "y"}, True, {"create": False, "copy": True}),
        # a key removed from the Secret: added back from the copy, nothing overwritten
        ({"root-password": "stored-root"}, STORED, True, {"create": False, "add": ("password",)}),
    ],
)
def test_plans(stored: dict[str, str] | None, recovery: dict[str, str] | None, data: bool, expect: dict) -> None:
    plan = plan_credentials(spec_of(), stored, recovery, data_exists=data, rng=rng)
    assert plan.refused is None and plan.values is not None
    assert plan.create_secret == expect["create"]
    if "copy" in expect:
        assert plan.write_recovery == expect["copy"]
    if "restored" in expect:
        assert plan.restored == expect["restored"]
    if "generated" in expect:
        assert plan.values.generated == expect["generated"]
    if "add" in expect:
        assert plan.add_keys == expect["add"]
    if stored or recovery:
        merged = {**(recovery or {}), **(stored or {})}
        assert {k: v.reveal() for k, v in plan.values.values.items()} == merged


def test_both_secrets_lost_over_existing_data_is_refused_without_values() -> None:
    plan = plan_credentials(spec_of(), None, None, data_exists=True, rng=rng)
    assert plan.values is None and plan.refused is not None
    assert "multinic-mariadb-credentials" in plan.refused and "data-multinic-mariadb-0" in plan.refused
    assert not plan.create_secret and not plan.write_recovery


def test_inline_values_may_rebuild_lost_secrets_over_data_but_stored_values_win() -> None:
    plan = plan_credentials(spec_of(INLINE), None, None, data_exists=True, rng=rng)
    assert plan.refused is None and plan.values is not None and plan.values.generated == ()
    kept = plan_credentials(spec_of(INLINE), None, STORED, data_exists=True, rng=rng)
    assert kept.values is not None and kept.values.values["password"].reveal() == "stored-user"
    assert kept.values.differs_from_inline == ("root-password", "password")


def test_user_secret_references_need_no_operator_secret() -> None:
    refs = {"database": {"credentials": {
        "rootPasswordSecretRef": {"name": "mine", "key": "root"}, "passwordSecretRef": {"name": "mine", "key": "pw"},
    }}}  # fmt: skip
    plan = plan_credentials(spec_of(refs), None, None, data_exists=True, rng=rng)
    assert not plan.needs_secret and plan.refused is None


def test_recovery_copy_is_protected_labelled_and_kept_on_uninstall() -> None:
    spec = spec_of()
    plan = plan_credentials(spec, None, None, data_exists=False, rng=rng)
    assert plan.values is not None
    secret = credentials_secret(spec, OWNER, plan.values)
    assert secret is not None
    copy = recovery_secret(spec, OWNER, secret)
    assert copy["metadata"]["name"] == RECOVERY_SECRET and copy["data"] == secret["data"]
    assert copy["metadata"]["labels"][PROTECTED_LABEL] == "true"
    assert copy["metadata"]["labels"][MANAGED_BY_LABEL] == OWNER.name
    assert "ownerReferences" not in copy["metadata"]
    owned = recovery_secret(spec_of({"database": {"deleteDataOnUninstall": True}}), OWNER, secret)
    assert owned["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid


def test_plan_repr_shows_no_secret() -> None:
    plan = plan_credentials(spec_of(INLINE), None, None, data_exists=False, rng=rng)
    assert ROOT_PW not in repr(plan) and USER_PW not in repr(plan)
