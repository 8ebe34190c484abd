"""Every Prometheus metric the process exports, declared in one place.

Declaring them centrally keeps names and label sets consistent between the controller, the operator and the
shared machinery, and lets `/metrics` show every series family from the first scrape (a family that only
appears after its first observation makes alerts on `absent()` misfire).

Label values must never carry secrets: only service names, operation names, HTTP codes and result words.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

OPENSTACK_REQUEST_DURATION = Histogram(
    "multinic_openstack_request_duration_seconds",
    "Duration of HTTP requests to OpenStack APIs.",
    ["service", "operation", "code"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
OPENSTACK_OBSERVATIONS = Counter(
    "multinic_openstack_observations_total",
    "OpenStack observations made (one set of subnets/servers/ports/MTU calls, for one or many configs), by "
    "result (success, error).",
    ["result"],
    registry=REGISTRY,
)
OPENSTACK_OBSERVATION_CONFIGS = Histogram(
    "multinic_openstack_observation_configs",
    "Configs one observation was made for (the reconciles that asked, plus the due configs taken along).",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000),
    registry=REGISTRY,
)
OPENSTACK_OBSERVE_REQUESTS = Counter(
    "multinic_openstack_observe_requests_total",
    "Reconciles that needed an OpenStack observation, by what served them: new (started an observation), joined "
    "(an observation about to start), in_flight (a running one), cached (a finished one, fresh enough). Each "
    "request not served by `new` saved a whole observation.",
    ["served_by"],
    registry=REGISTRY,
)
DATABASE_OPERATION_DURATION = Histogram(
    "multinic_database_operation_duration_seconds",
    "Duration of database operations (one observation per repository call).",
    ["operation", "result"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
RECONCILE_TOTAL = Counter(
    "multinic_reconcile_total",
    "OpenstackConfig reconciles by result (success, error, skipped, requeue) and trigger.",
    ["result", "trigger"],
    registry=REGISTRY,
)
ORPHANS_COLLECTED = Counter(
    "multinic_orphaned_configs_collected_total",
    "Configs that no longer exist whose leftover rows and state were removed (deleted without cleanup).",
    registry=REGISTRY,
)
ACTIVE_DB_CONNECTIONS = Gauge(
    "multinic_active_db_connections",
    "Database connections currently checked out of the pool.",
    registry=REGISTRY,
)

# The opt-in OpenStack notification listener (notifications/).
NOTIFICATIONS_RECEIVED = Counter(
    "multinic_notifications_received_total",
    "OpenStack notifications received, by outcome: relevant (a port, interface, network or subnet change), "
    "ignored (any other event), malformed (not an oslo.messaging notification; dropped).",
    ["outcome"],
    registry=REGISTRY,
)
NOTIFICATIONS_CONNECTED = Gauge(
    "multinic_notifications_connected",
    "1 while the listener is connected to the message bus and bound to at least one exchange, else 0.",
    registry=REGISTRY,
)
NOTIFICATIONS_CONNECTION_ATTEMPTS = Counter(
    "multinic_notifications_connection_attempts_total",
    "Connection attempts to the message bus, by result (success, failure).",
    ["result"],
    registry=REGISTRY,
)
NOTIFICATIONS_ENQUEUED = Counter(
    "multinic_notifications_configs_queued_total",
    "Configs queued for a re-observation because a notification concerned their OpenStack project.",
    registry=REGISTRY,
)

# Operator-side metrics (MISSION.md "Observability").
OPERATOR_RECONCILE_TOTAL = Counter(
    "multinic_operator_reconcile_total",
    "MultiNicOperator reconciles by result.",
    ["result"],
    registry=REGISTRY,
)
OPERATOR_MANAGED_RESOURCES = Gauge(
    "multinic_operator_managed_resources_count",
    "Kubernetes objects managed by the operator, by kind.",
    ["kind"],
    registry=REGISTRY,
)
OPERATOR_PROTECTION_EVENTS = Counter(
    "multinic_operator_protection_events_total",
    "Admission requests judged by the protection webhook, by operation (CREATE, UPDATE, DELETE, CONNECT, other) "
    "and result (allowed, denied, error).",
    ["operation", "result"],
    registry=REGISTRY,
)

OPERATOR_DRIFT_CORRECTIONS = Counter(
    "multinic_operator_drift_corrections_total",
    "Managed objects the operator found drifted (changed or deleted) and repaired, by kind.",
    ["kind"],
    registry=REGISTRY,
)
OPERATOR_DRIFT_DETECTED = Counter(
    "multinic_operator_drift_detected_total",
    "Managed objects found drifted, by kind and action (repaired, reported: auto-recovery off, recreate: "
    "Kubernetes refuses the change in place).",
    ["kind", "action"],
    registry=REGISTRY,
)
OPERATOR_RECONCILE_DURATION = Histogram(
    "multinic_operator_reconcile_duration_seconds",
    "Duration of MultiNicOperator reconciles.",
    ["result"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
OPERATOR_BACKUP_LAST_SUCCESS = Gauge(
    "multinic_operator_backup_last_success_timestamp_seconds",
    "Unix time of the last successful database backup of an installation (0: none yet).",
    ["namespace", "name"],
    registry=REGISTRY,
)
OPERATOR_BACKUP_LAST_STATUS = Gauge(
    "multinic_operator_backup_last_status",
    "Outcome of the last finished backup of an installation: 1 succeeded, 0 failed, -1 none yet or disabled.",
    ["namespace", "name"],
    registry=REGISTRY,
)

# Work queue metrics, named as controller-runtime names them so existing dashboards work.
WORKQUEUE_DEPTH = Gauge("workqueue_depth", "Current depth of the work queue.", ["name"], registry=REGISTRY)
WORKQUEUE_ADDS = Counter("workqueue_adds_total", "Adds handled by the work queue.", ["name"], registry=REGISTRY)
WORKQUEUE_QUEUE_DURATION = Histogram(
    "workqueue_queue_duration_seconds",
    "How long an item waits in the work queue before it is handed to a worker.",
    ["name"],
    buckets=(1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0),
    registry=REGISTRY,
)
WORKQUEUE_WORK_DURATION = Histogram(
    "workqueue_work_duration_seconds",
    "How long processing one item takes.",
    ["name"],
    buckets=(1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0),
    registry=REGISTRY,
)
WORKQUEUE_RETRIES = Counter("workqueue_retries_total", "Rate-limited re-adds.", ["name"], registry=REGISTRY)
