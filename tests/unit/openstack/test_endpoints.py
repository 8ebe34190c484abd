"""Endpoint normalisation, catalog lookup, credentials hygiene (pure)."""

from __future__ import annotations

import pytest

from multinic_ctrl.openstack import ConfigurationError, Credentials, EndpointNotFound
from multinic_ctrl.openstack.endpoints import (
    CatalogEndpoint,
    normalize_compute_url,
    normalize_identity_url,
    normalize_network_url,
    resolve_endpoints,
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://110.0.0.100:5000", "http://110.0.0.100:5000/v3"),
        ("http://110.0.0.100:5000/", "http://110.0.0.100:5000/v3"),
        ("http://110.0.0.100:5000/v3", "http://110.0.0.100:5000/v3"),
        ("http://110.0.0.100:5000/v3/", "http://110.0.0.100:5000/v3"),
        ("https://cloud/identity", "https://cloud/identity/v3"),
        ("https://cloud/identity/v2.0", "https://cloud/identity/v3"),
        ("  http://h:5000  ", "http://h:5000/v3"),
    ],
)
def test_identity_url(given: str, expected: str) -> None:
    assert normalize_identity_url(given) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("http://h:9696", "http://h:9696/v2.0"),
        ("http://h:9696/", "http://h:9696/v2.0"),
        ("http://h:9696/v2.0", "http://h:9696/v2.0"),
        ("http://h:9696/v2.0/", "http://h:9696/v2.0"),
        ("https://cloud/networking", "https://cloud/networking/v2.0"),
    ],
)
def test_network_url(given: str | None, expected: str | None) -> None:
    assert normalize_network_url(given) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, None),
        ("", None),
        ("http://h:8774", "http://h:8774/v2.1"),
        ("http://h:8774/", "http://h:8774/v2.1"),
        ("http://h:8774/v2.1", "http://h:8774/v2.1"),
        ("http://h:8774/v2.1/", "http://h:8774/v2.1"),
        ("http://h:8774/v2.1/0123abcd", "http://h:8774/v2.1/0123abcd"),
        ("http://h:8774/v2/0123abcd", "http://h:8774/v2/0123abcd"),
        ("https://cloud/compute/v2.1", "https://cloud/compute/v2.1"),
        ("https://cloud/compute", "https://cloud/compute/v2.1"),
    ],
)
def test_compute_url(given: str | None, expected: str | None) -> None:
    assert normalize_compute_url(given) == expected


@pytest.mark.parametrize("bad", ["110.0.0.100:5000", "ftp://h", "http://", "http://h:5000?x=1"])
def test_bad_urls_are_configuration_errors(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        normalize_identity_url(bad)


def test_empty_auth_url_is_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="authURL is empty"):
        normalize_identity_url("")


CATALOG = (
    CatalogEndpoint("compute", "internal", "RegionOne", "http://internal:8774/v2.1"),
    CatalogEndpoint("compute", "public", "RegionTwo", "http://two:8774/v2.1"),
    CatalogEndpoint("compute", "public", "RegionOne", "http://one:8774/v2.1"),
    CatalogEndpoint("network", "public", "RegionOne", "http://one:9696"),
    CatalogEndpoint("network", "public", "RegionTwo", "http://two:9696/"),
)


def creds(**kw: str) -> Credentials:
    return Credentials(auth_url="http://k:5000", username="admin", password="s3cret", **kw)


def test_empty_spec_endpoints_mean_catalog() -> None:
    eps = resolve_endpoints(creds(compute_endpoint="", network_endpoint=" "), CATALOG)
    assert eps.compute == "http://two:8774/v2.1"  # first public compute endpoint
    assert eps.network == "http://one:9696/v2.0"


def test_catalog_region_and_interface() -> None:
    eps = resolve_endpoints(creds(region="RegionTwo"), CATALOG)
    assert (eps.compute, eps.network) == ("http://two:8774/v2.1", "http://two:9696/v2.0")
    eps = resolve_endpoints(creds(interface="internal", network_endpoint="http://n:9696"), CATALOG)
    assert (eps.compute, eps.network) == ("http://internal:8774/v2.1", "http://n:9696/v2.0")


def test_spec_endpoints_win_over_catalog() -> None:
    eps = resolve_endpoints(creds(compute_endpoint="http://c:8774", network_endpoint="http://n:9696/v2.0"), ())
    assert (eps.compute, eps.network) == ("http://c:8774/v2.1", "http://n:9696/v2.0")


def test_missing_catalog_entry() -> None:
    with pytest.raises(EndpointNotFound, match="no 'compute' endpoint with interface 'admin'"):
        resolve_endpoints(creds(interface="admin"), CATALOG)


def test_password_never_in_repr_or_cache_key() -> None:
    c = creds(project_id="p")
    assert "s3cret" not in repr(c)
    assert "s3cret" not in c.cache_key()
    assert c.cache_key() == creds(project_id="p").cache_key()
    other = Credentials(auth_url="http://k:5000", username="admin", password="other", project_id="p")
    assert other.cache_key() != c.cache_key()
