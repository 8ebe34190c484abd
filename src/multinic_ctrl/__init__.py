"""MultiNic controller: OpenStack Neutron ports → MariaDB rows for the MultiNic node agent."""

__version__ = "0.1.0"
