"""A stateful OpenStack simulator (Keystone v3, Nova v2.1, Neutron v2.0 subset) for tests and demos."""

from .faults import Faults, RequestLog, RequestRecord
from .fixtures import DEFAULT_SEED, Simulator, load_seed, running_simulator
from .state import SimState

__all__ = [
    "DEFAULT_SEED",
    "Faults",
    "RequestLog",
    "RequestRecord",
    "SimState",
    "Simulator",
    "load_seed",
    "running_simulator",
]
