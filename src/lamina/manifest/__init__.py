"""Checks and joins over the manifest: `verify` (bit rot), `reconcile` (two listings),
`attach` (per-image metadata), plus `status` (what the store holds).

The functions are imported from their modules, not re-exported here: a re-export would
shadow the module of the same name (`lamina.manifest.verify` must stay the module so spawned
verify workers, and monkeypatching tests, find it), and keeps worker start-up light.

Example:
    >>> from lamina.manifest.reconcile import reconcile
    >>> reconcile("photos-store", "bucket.csv").summary["only_in_b"]  # doctest: +SKIP
    0
"""
