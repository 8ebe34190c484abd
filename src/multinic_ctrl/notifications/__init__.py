"""The opt-in OpenStack notification listener: hot-attached NICs reach the database within seconds.

Polling alone sees a change made in OpenStack at the next resync. With `OPENSTACK_NOTIFICATIONS_URL` set, the
controller also listens to Nova's and Neutron's notifications on their message bus (RabbitMQ, AMQP 0-9-1)
and re-observes a project as soon as one of its ports or interfaces changed. It is an optimisation only:
polling keeps running, and the listener being down (or never configured) changes nothing else.

Knows AMQP and oslo.messaging's notification format; nothing about Kubernetes, the database or the OpenStack
REST APIs. The controller wires it (`controller/notified.py`).

- `envelope`: body bytes → notification object (oslo.messaging envelope 2.0 or bare)
- `events`: which event types matter, and the projects they concern
- `handler`: per message: cheap pre-filter, decode, classify, count; never raises
- `listener`: AMQP connection, our own queue, bindings, consumption, reconnects
- `directory`: project → configs; `hints`: configs marked for re-observation; `throttle`: per-project rate
"""

from .directory import ProjectDirectory
from .envelope import MalformedNotification, decode
from .events import RELEVANT_EVENTS, Change, classify
from .handler import NotificationHandler
from .hints import ChangeHints
from .listener import BusListener
from .throttle import ProjectThrottle

__all__ = [
    "RELEVANT_EVENTS",
    "BusListener",
    "Change",
    "ChangeHints",
    "MalformedNotification",
    "NotificationHandler",
    "ProjectDirectory",
    "ProjectThrottle",
    "classify",
    "decode",
]
