"""The node agent: reconcile loop, pacing, metrics and health around the core and dataplane."""
