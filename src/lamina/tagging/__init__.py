"""Tagging: a label list scored against every image, and the approvals kept apart.

- `labels`: label files and prompt templates.
- `text`: label text vectors, cached in the store.
- `offline`: the offline tagger's text side (ImageNet classes -> labels; approximate).
- `tags`: the `tags` global pass and `current_tags` (tagging a store is the job
  `lamina.jobs.tag`).
- `approvals`: approved labels with their history (who, when, from which tags run).

Importing this package registers the `tags` pass.

Example:
    >>> from lamina.tagging import current_tags
    >>> current_tags(lamina.open()).num_rows  # doctest: +SKIP
    312
"""

from lamina.tagging.approvals import (
    approval_history,
    approve,
    approve_over_threshold,
    current_approvals,
)
from lamina.tagging.labels import DEFAULT_TEMPLATES, load_labels, normalise_labels
from lamina.tagging.tags import current_tags

__all__ = [
    "DEFAULT_TEMPLATES",
    "approval_history",
    "approve",
    "approve_over_threshold",
    "current_approvals",
    "current_tags",
    "load_labels",
    "normalise_labels",
]
