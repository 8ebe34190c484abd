"""ML2 mechanism driver for the MultiNic OpenStack testbed.

The testbed runs Neutron without any L2 agent or dataplane.  Without an
agent, ML2 never binds a port and Nova cannot boot a server on it.  This
driver binds every port on the first segment offered, reporting an
Open vSwitch VIF the way the OVS agent's driver would, and marks the port
ACTIVE straight away (no agent will ever report the device up).
"""

from neutron_lib import constants
from neutron_lib.api.definitions import portbindings
from neutron_lib.plugins.ml2 import api
from oslo_log import log as logging

LOG = logging.getLogger(__name__)


class BindAllMechanismDriver(api.MechanismDriver):
    """Binds every port it is asked to bind, on the first segment."""

    def initialize(self):
        LOG.info("multinic_bindall mechanism driver initialised")

    @property
    def connectivity(self):
        return portbindings.CONNECTIVITY_L2

    def bind_port(self, context):
        vnic_type = context.current.get(portbindings.VNIC_TYPE, portbindings.VNIC_NORMAL)
        if vnic_type != portbindings.VNIC_NORMAL:
            LOG.debug("not binding port %s: vnic_type %s", context.current["id"], vnic_type)
            return
        for segment in context.segments_to_bind:
            context.set_binding(
                segment[api.ID],
                portbindings.VIF_TYPE_OVS,
                {
                    portbindings.CAP_PORT_FILTER: True,
                    portbindings.OVS_HYBRID_PLUG: False,
                    portbindings.VIF_DETAILS_CONNECTIVITY: portbindings.CONNECTIVITY_L2,
                },
                status=constants.PORT_STATUS_ACTIVE,
            )
            LOG.debug("bound port %s on segment %s", context.current["id"], segment[api.ID])
            return
