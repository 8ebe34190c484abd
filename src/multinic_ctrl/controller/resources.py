"""The Kubernetes resources the controller reads and writes."""

from __future__ import annotations

from multinic_ctrl.kube import Resource

GROUP = "multinic.example.com"
VERSION = "v1alpha1"
OPENSTACKCONFIGS = Resource(GROUP, VERSION, "openstackconfigs", True, "OpenstackConfig")
MULTINICOPERATORS = Resource(GROUP, VERSION, "multinicoperators", True, "MultiNicOperator")
SECRETS = Resource("", "v1", "secrets", True, "Secret")
SECRET_METADATA = Resource("", "v1", "secrets", True, "Secret", metadata_only=True)
"""What the controller watches of Secrets: metadata only, so no Secret content sits in its cache."""
FINALIZER = f"{GROUP}/interface-rows"
"""Held while the config's interface rows exist, so deleting a config always removes them first."""
