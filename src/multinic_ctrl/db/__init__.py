"""MariaDB access: connection pool, versioned migrations, and the diff-applying repository."""

from multinic_ctrl.db.models import (
    ApplyResult,
    DesiredState,
    InterfaceRow,
    NodeRow,
    RowDiff,
    SubnetRow,
)
from multinic_ctrl.db.pool import Database, DatabaseError, DatabaseUnavailable
from multinic_ctrl.db.repository import Repository

__all__ = [
    "ApplyResult",
    "Database",
    "DatabaseError",
    "DatabaseUnavailable",
    "DesiredState",
    "InterfaceRow",
    "NodeRow",
    "Repository",
    "RowDiff",
    "SubnetRow",
]
