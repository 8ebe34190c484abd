"""The MultiNicOperator operator: one object describes a whole MultiNic installation (controller Deployment, optional
MariaDB StatefulSet with backups), the operator builds it, keeps it as described and reports back.

This half is pure: `spec` (parse and validate), `desired` and its builders (spec → objects), `credentials`
(the Secret created once), `status` (observations → status), `drift` (desired vs live). A sibling of
`multinic_ctrl.controller`: neither imports the other (import-linter layers contract in setup.cfg).
"""
