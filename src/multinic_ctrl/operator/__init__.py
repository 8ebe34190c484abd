"""The MultiNicOperator operator: one object describes a whole MultiNic installation (controller Deployment, optional
MariaDB StatefulSet with backups), the operator builds it, keeps it as described and reports back.

Pure: `spec` (parse and validate), `desired` and its builders (spec → objects), `credentials` and `recovery` (the
Secret created once, its recovery copy, when to refuse), `status` and `backup_status` (observations → status),
`drift` (desired vs live). I/O: `reconciler` (read, decide with the pure modules, write once) and `service`
(informers, queue, leader election). A sibling of `multinic_ctrl.controller`: neither imports the other
(import-linter layers contract in setup.cfg).

Designed for the protection webhook (issue 13), not built here: every managed object carries
`multinic.example.com/protected=true` and the ownership labels, and everything the operator writes goes through
one field manager (`names.FIELD_MANAGER`) as the ServiceAccount `multinic-operator` - the webhook decides "made by
the operator" from that `userInfo`, never from labels, and exempts it with a `matchConditions` expression so the
reconciler can repair drift while the webhook endpoint is down; `status.protectionStatus` is already in the
status document (inactive) for the webhook to fill.
"""
