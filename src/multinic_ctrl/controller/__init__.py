"""The OpenstackConfig controller: trigger policy, spec handling, reconcile, webhook trigger, plan."""
