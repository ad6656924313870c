"""The policy API's meaning, for the cluster-wide kinds (ClusterNetworkPolicy).

core/ holds two houses: what the policy APIs mean (model, convert, validate,
selectors, matching, semantics, explain, table) and the node's ruleset (compile,
chainbuild, render, trace, ...). ClusterNetworkPolicy's model, validation,
conversion and tier semantics start the first house's own sub-package here; the
NetworkPolicy modules are to move in beside them in a later session (moving them
now would collide with the engineers editing core/ in parallel).
"""
