"""The OpenStack client of every controller command, built in one place.

`run` and `plan` must reach OpenStack with the same trust: a `plan` that ignores the CA bundle (or the
explicit insecure switch) the controller runs with fails TLS verification against an OpenStack the
controller itself reaches fine, and sends the operator looking for a fault that is not there. Building the
client here, from the process settings, means a TLS option added later cannot reach one command and miss
the other.
"""

from __future__ import annotations

from multinic_ctrl.openstack import EndpointPolicy, HttpSettings, OpenStackClient
from multinic_ctrl.settings import Settings


def openstack_client(settings: Settings) -> OpenStackClient:
    """A new client trusting the configured CA bundle (system CAs without one), or nothing when insecure,
    and sending credentials only to endpoints the admin's allow-list (`OPENSTACK_ALLOWED_URLS`) admits."""
    cfg = settings.controller
    return OpenStackClient(
        HttpSettings(ca_bundle=cfg.openstack_ca_bundle, insecure=cfg.openstack_insecure),
        policy=EndpointPolicy.parse(cfg.openstack_allowed_urls),
    )
