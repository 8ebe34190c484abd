"""OPENSTACK_NOTIFICATIONS_*: the opt-in listener's settings; the broker password never shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from multinic_ctrl.cli import main
from multinic_ctrl.settings import NotificationSettings, SettingsError, load_settings

URL = "amqp://listener:pa%40ss-w0rd@rabbit.example:5672/openstack"
NOT_PEM = __file__  # a file that holds no certificate
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def test_off_unless_a_url_is_given() -> None:
    assert load_settings({}, {}).controller.notifications is None


def test_defaults() -> None:
    n = load_settings({}, {"OPENSTACK_NOTIFICATIONS_URL": URL}).controller.notifications
    assert n == NotificationSettings(url=URL)
    assert n.exchanges == ("nova", "neutron")
    assert n.topics == ("notifications", "versioned_notifications")
    assert (n.ca_bundle, n.min_interval) == (None, 1.0)


def test_everything_set(tmp_path: Path) -> None:
    url_file = tmp_path / "url"
    url_file.write_text(URL.replace("amqp:", "amqps:") + "\n")  # a Secret written with echo
    ca = SYSTEM_CA
    assert ca.is_file()
    n = load_settings(
        {},
        {
            "OPENSTACK_NOTIFICATIONS_URL_FILE": str(url_file),
            "OPENSTACK_NOTIFICATIONS_EXCHANGES": "nova, neutron,nova,cinder",
            "OPENSTACK_NOTIFICATIONS_TOPICS": "notifications",
            "OPENSTACK_NOTIFICATIONS_CA_BUNDLE": str(ca),
            "OPENSTACK_NOTIFICATIONS_MIN_INTERVAL": "500ms",
        },
    ).controller.notifications
    assert n is not None
    assert n.url == URL.replace("amqp:", "amqps:")
    assert (n.exchanges, n.topics) == (("nova", "neutron", "cinder"), ("notifications",))
    assert (n.ca_bundle, n.min_interval) == (str(ca), 0.5)


def test_the_password_never_shows() -> None:
    settings = load_settings({}, {"OPENSTACK_NOTIFICATIONS_URL": URL})
    n = settings.controller.notifications
    assert n is not None
    assert "pa%40ss" not in repr(settings) and "pa@ss" not in repr(settings)
    assert n.display_url == "amqp://listener:***@rabbit.example:5672/openstack"
    # Masked in every log line: the URL, the password as written in it and decoded.
    assert {URL, "pa%40ss-w0rd", "pa@ss-w0rd"} <= set(settings.secrets())
    assert NotificationSettings(url="amqp://host/").display_url == "amqp://host/"
    assert NotificationSettings(url="amqps://u:pw@[fd00::1]:5671/").display_url == "amqps://u:***@[fd00::1]:5671/"


@pytest.mark.parametrize(
    ("env", "source", "fragment"),
    [
        ({"OPENSTACK_NOTIFICATIONS_URL": "http://u:secretpw@h/"}, "OPENSTACK_NOTIFICATIONS_URL", "scheme 'http'"),
        ({"OPENSTACK_NOTIFICATIONS_URL": "rabbit://u:secretpw@h/"}, "OPENSTACK_NOTIFICATIONS_URL", "not amqp"),
        ({"OPENSTACK_NOTIFICATIONS_URL": "amqp://u:secretpw@/"}, "OPENSTACK_NOTIFICATIONS_URL", "names no host"),
        ({"OPENSTACK_NOTIFICATIONS_URL": "amqp://u:secretpw@h:99999/"}, "OPENSTACK_NOTIFICATIONS_URL", "not a valid"),
        ({"OPENSTACK_NOTIFICATIONS_URL": "amqp://u:secretpw@h:0/"}, "OPENSTACK_NOTIFICATIONS_URL", "port 0"),
        (
            {"OPENSTACK_NOTIFICATIONS_URL": "amqp://u:secretpw@h/?heartbeat=5"},
            "OPENSTACK_NOTIFICATIONS_URL",
            "query parameters",
        ),
        (
            {"OPENSTACK_NOTIFICATIONS_URL": "amqp://u:secretpw@h/", "OPENSTACK_NOTIFICATIONS_URL_FILE": "/x"},
            "OPENSTACK_NOTIFICATIONS_URL_FILE",
            "either",
        ),
        ({"OPENSTACK_NOTIFICATIONS_URL_FILE": "/nonexistent/url"}, "OPENSTACK_NOTIFICATIONS_URL_FILE", "cannot read"),
        ({"OPENSTACK_NOTIFICATIONS_EXCHANGES": "nova"}, "OPENSTACK_NOTIFICATIONS_EXCHANGES", "listener is off"),
        (
            {"OPENSTACK_NOTIFICATIONS_URL": "amqp://u:secretpw@h/", "OPENSTACK_NOTIFICATIONS_EXCHANGES": "nova,a b"},
            "OPENSTACK_NOTIFICATIONS_EXCHANGES",
            "'a b' is not an exchange",
        ),
        (
            {"OPENSTACK_NOTIFICATIONS_URL": "amqp://u:secretpw@h/", "OPENSTACK_NOTIFICATIONS_TOPICS": "x#"},
            "OPENSTACK_NOTIFICATIONS_TOPICS",
            "not an exchange or topic",
        ),
        (
            {"OPENSTACK_NOTIFICATIONS_URL": "amqp://u:secretpw@h/", "OPENSTACK_NOTIFICATIONS_CA_BUNDLE": NOT_PEM},
            "OPENSTACK_NOTIFICATIONS_CA_BUNDLE",
            "URL is amqp://",
        ),
        (
            {"OPENSTACK_NOTIFICATIONS_URL": "amqps://u:secretpw@h/", "OPENSTACK_NOTIFICATIONS_CA_BUNDLE": NOT_PEM},
            "OPENSTACK_NOTIFICATIONS_CA_BUNDLE",
            "cannot load CA certificates",
        ),
        (
            {"OPENSTACK_NOTIFICATIONS_URL": "amqp://u:secretpw@h/", "OPENSTACK_NOTIFICATIONS_MIN_INTERVAL": "61s"},
            "OPENSTACK_NOTIFICATIONS_MIN_INTERVAL",
            "out of range",
        ),
        (
            {"OPENSTACK_NOTIFICATIONS_URL": "amqp://u:secretpw@h/", "OPENSTACK_NOTIFICATIONS_MIN_INTERVAL": "soon"},
            "OPENSTACK_NOTIFICATIONS_MIN_INTERVAL",
            "not a duration",
        ),
    ],
)
def test_bad_settings_name_their_variable_and_never_the_password(
    env: dict[str, str], source: str, fragment: str
) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({}, env)
    assert info.value.source == source
    assert fragment in str(info.value)
    assert "secretpw" not in str(info.value)


def test_cli_exits_2_without_quoting_the_url(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENSTACK_NOTIFICATIONS_URL", "https://listener:secretpw@rabbit/")
    with pytest.raises(SystemExit) as info:
        main(["migrate"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "multinic-ctrl: error: OPENSTACK_NOTIFICATIONS_URL: scheme 'https' is not amqp or amqps"
    ]
    assert "secretpw" not in err
