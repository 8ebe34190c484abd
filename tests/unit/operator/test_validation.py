"""Field grammars for attacker-written MultiNicOperator values: names, images, quantities, schedules, URLs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from multinic_ctrl.operator import cron, quantity, validation
from multinic_ctrl.operator.validation import SecretValue, SpecError

# ---------------------------------------------------------------- DNS names


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("multinic", True),
        ("a", True),
        ("a-b.c-d", True),
        ("x" * 253, True),
        ("x" * 254, False),
        ("Upper", False),
        ("-lead", False),
        ("trail-", False),
        ("a..b", False),
        ("a_b", False),
        ("a b", False),
        ("a\nb", False),
        ("name\n", False),  # `$` in a Python regex would accept a trailing newline; fullmatch does not
        ("\uff4dulti", False),  # a Unicode look-alike (fullwidth m)
        ("a;rm -rf /", False),
        ("../etc", False),
        ("", False),
        (5, False),
    ],
)
def test_dns_subdomain(value: Any, ok: bool) -> None:
    if ok:
        assert validation.dns_subdomain(value, "f") == value
    else:
        with pytest.raises(SpecError, match=r"^f: "):
            validation.dns_subdomain(value, "f")


@pytest.mark.parametrize(("value", "ok"), [("ns-1", True), ("x" * 63, True), ("x" * 64, False), ("a.b", False)])
def test_dns_label(value: str, ok: bool) -> None:
    if ok:
        assert validation.dns_label(value, "f") == value
    else:
        with pytest.raises(SpecError):
            validation.dns_label(value, "f")


# ---------------------------------------------------------------- images


@pytest.mark.parametrize(
    "value",
    [
        "multinic:v1alpha1",
        "mariadb:10.11",
        "mariadb",
        "docker.io/library/mariadb:10.11.6",
        "localhost:5000/team/multinic:dev_1",
        "registry.example.com/a/b/c@sha256:" + "a" * 64,
        "registry.example.com/a:1.0@sha256:" + "0" * 64,
        "ghcr.io/org/my__image-name.x:tag-1.2_3",
    ],
)
def test_valid_images(value: str) -> None:
    assert validation.image(value, "spec.controller.image", default="x") == value


@pytest.mark.parametrize(
    "value",
    [
        "Multinic:v1",  # upper-case repository
        "multinic:v1; rm -rf /",
        "multinic:$(whoami)",
        "multinic:`id`",
        "multinic:v1\n",
        "multinic :v1",
        "multinic:",
        ":tag",
        "multinic@sha256:short",
        "multinic:" + "t" * 129,
        "a" * 256,
        "http://registry/x",
        "registry/../x",
        "--help",
        "",
    ],
)
def test_invalid_images(value: str) -> None:
    with pytest.raises(SpecError, match=r"^spec\.controller\.image: "):
        validation.image(value, "spec.controller.image", default="x")


def test_image_default() -> None:
    assert validation.image(None, "f", default="multinic:v1alpha1") == "multinic:v1alpha1"


# ---------------------------------------------------------------- env names, keys, paths, URLs


@pytest.mark.parametrize(
    ("value", "ok"),
    [("DB_HOST", True), ("_x1", True), ("1X", False), ("A-B", False), ("A=B", False), ("A B", False), ("É", False)],
)
def test_env_name(value: str, ok: bool) -> None:
    if ok:
        assert validation.env_name(value, "f") == value
    else:
        with pytest.raises(SpecError):
            validation.env_name(value, "f")


@pytest.mark.parametrize(
    ("value", "ok"), [("password", True), ("tls.crt", True), (".", False), ("..", False), ("a/b", False)]
)
def test_config_key(value: str, ok: bool) -> None:
    if ok:
        assert validation.config_key(value, "f") == value
    else:
        with pytest.raises(SpecError):
            validation.config_key(value, "f")


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("/healthz", True),
        ("/a/b-c_d.e", True),
        ("healthz", False),
        ("/a//b", False),
        ("/a/../b", False),
        ("/a?b", False),
    ],
)
def test_http_path(value: str, ok: bool) -> None:
    if ok:
        assert validation.http_path(value, "f", default="/") == value
    else:
        with pytest.raises(SpecError):
            validation.http_path(value, "f", default="/")


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("http://110.0.0.100:5000/v3", True),
        ("https://keystone.example", True),
        ("ftp://x", False),
        ("http://user:pw@host/", False),  # credentials in a URL would end up in logs and status
        ("http://host:99999/", False),
        ("http://ho st/", False),
        ("http://", False),
    ],
)
def test_http_url(value: str, ok: bool) -> None:
    if ok:
        assert validation.http_url(value, "f") == value
    else:
        with pytest.raises(SpecError):
            validation.http_url(value, "f")


def test_http_url_error_does_not_echo_the_url() -> None:
    with pytest.raises(SpecError) as err:
        validation.http_url("http://admin:hunter2@host/", "spec.openstack.identityEndpoint")
    assert "hunter2" not in str(err.value)
    assert str(err.value).startswith("spec.openstack.identityEndpoint: ")


@pytest.mark.parametrize(
    ("value", "minutes"), [("7d", 7 * 1440), ("36h", 36 * 60), ("1d12h", 36 * 60), ("90m", 90), ("1d1h1m", 1501)]
)
def test_duration_minutes(value: str, minutes: int) -> None:
    assert validation.duration_minutes(value, "f") == minutes


@pytest.mark.parametrize("value", ["", "0m", "7", "1w", "1h1d", "-1d", "99999d"])
def test_bad_duration_minutes(value: str) -> None:
    with pytest.raises(SpecError):
        validation.duration_minutes(value, "f")


@pytest.mark.parametrize(("value", "ok"), [("15m", True), ("1h30m", True), ("0m", False), ("", False), ("15", False)])
def test_duration_hms(value: str, ok: bool) -> None:
    if ok:
        assert validation.duration_hms(value, "f") == value
    else:
        with pytest.raises(SpecError):
            validation.duration_hms(value, "f")


@pytest.mark.parametrize(
    ("value", "ok"),
    [("UTC", True), ("Europe/Berlin", True), ("America/Argentina/Buenos_Aires", True), ("Mars/Olympus", False),
     ("../../etc/passwd", False), ("/etc/localtime", False), ("UTC\n", False)],
)  # fmt: skip
def test_timezone(value: str, ok: bool) -> None:
    if ok:
        assert validation.timezone(value, "f") == value
    else:
        with pytest.raises(SpecError):
            validation.timezone(value, "f")


def test_unknown_fields_are_refused_and_odd_keys_are_not_echoed() -> None:
    with pytest.raises(SpecError, match=r"^spec\.extra: is not a known field$"):
        validation.mapping({"extra": 1}, "spec", {"known"})
    with pytest.raises(SpecError) as err:
        validation.mapping({"bad\nkey": 1}, "spec", {"known"})
    assert "\n" not in str(err.value)


def test_show_escapes_and_truncates() -> None:
    shown = validation.show("a\x1b[31m" + "x" * 200)
    assert "\x1b" not in shown and len(shown) <= 64


# ---------------------------------------------------------------- SecretValue


def test_secret_value_never_shows_itself() -> None:
    secret = SecretValue("hunter2")
    formatted = "{}".format(secret)  # noqa: UP032 - str.format is a separate code path
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", formatted, repr([secret])):
        assert "hunter2" not in text
    assert secret.reveal() == "hunter2"
    assert secret == SecretValue("hunter2") and secret != SecretValue("other")
    assert len({secret, SecretValue("hunter2")}) == 1


# ---------------------------------------------------------------- quantities


@pytest.mark.parametrize(
    ("kind", "value", "ok"),
    [
        ("cpu", "200m", True),
        ("cpu", "1.5", True),
        ("cpu", 2, True),
        ("cpu", "0", False),  # below the minimum
        ("cpu", "0.0001", False),
        ("cpu", "1e3", False),
        ("cpu", "-1", False),
        ("cpu", "1Gi", False),
        ("cpu", True, False),
        ("cpu", 1.5, False),
        ("memory", "256Mi", True),
        ("memory", "1Gi", True),
        ("memory", "512M", True),
        ("memory", "100m", False),  # millibytes
        ("memory", "1Ki", False),  # below 1Mi
        ("memory", "2Ti", False),  # above 1Ti
        ("storage", "20Gi", True),
        ("storage", "1.5Ti", True),
        ("storage", "9999999999999Ei", False),
        ("storage", "20 Gi", False),
        ("storage", "20Gi\n", False),
    ],
)
def test_quantity(kind: quantity.Kind, value: Any, ok: bool) -> None:
    if ok:
        assert quantity.quantity(value, "f", kind, default="1") == str(value)
    else:
        with pytest.raises(SpecError, match=r"^f: "):
            quantity.quantity(value, "f", kind, default="1")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", Decimal(1)),
        ("1000m", Decimal(1)),
        ("500m", Decimal("0.5")),
        ("1Gi", Decimal(2**30)),
        ("1024Mi", Decimal(2**30)),
        ("1k", Decimal(1000)),
        ("1e3", Decimal(1000)),
        ("1E", Decimal(10**18)),
        ("100n", Decimal("1e-7")),
        (".5", Decimal("0.5")),
    ],
)
def test_parse_lenient(text: str, value: Decimal) -> None:
    assert quantity.parse(text) == value


@pytest.mark.parametrize(("a", "b", "same"), [("1000m", "1", True), ("1Gi", "1024Mi", True), ("0.5", "500m", True),
                                              ("2", 2, True), ("1G", "1Gi", False), ("x", "x", False)])  # fmt: skip
def test_quantity_equal(a: object, b: object, same: bool) -> None:
    assert quantity.equal(a, b) is same


# ---------------------------------------------------------------- cron


@pytest.mark.parametrize(
    "schedule",
    [
        "0 2 * * *",
        "*/15 * * * *",
        "0 0 1,15 * *",
        "30 3 * JAN-MAR mon-fri",
        "0 0 ? * SUN",
        "5-10/2 0-23/6 1-31 1-12 0-6",
        "@daily",
        "@hourly",
        "@midnight",
    ],
)
def test_cron_valid(schedule: str) -> None:
    assert cron.check(schedule) == schedule


@pytest.mark.parametrize(
    ("schedule", "why"),
    [
        ("0 2 * *", "five fields"),
        ("0 2 * * * *", "five fields"),
        ("60 * * * *", "minute: 60"),
        ("* 24 * * *", "hour: 24"),
        ("* * 0 * *", "day-of-month: 0"),
        ("* * * 13 *", "month: 13"),
        ("* * * * 7", "day-of-week: 7"),
        ("*/0 * * * *", "bad step"),
        ("10-5 * * * *", "backwards"),
        ("? * * * *", "day fields"),
        ("* * * FOO *", "not a number"),
        ("TZ=UTC 0 2 * * *", "five fields"),
        ("CRON_TZ=UTC 0 2 * * *", "five fields"),
        ("@every 1h", "five fields"),
        ("0 2 * * *; curl evil", "five fields"),
        ("0 2 * * *\n", "five fields"),
        ("0  2 * * *", "five fields"),
        ("", "five fields"),
    ],
)
def test_cron_invalid(schedule: str, why: str) -> None:
    with pytest.raises(cron.CronError, match=why):
        cron.check(schedule)
