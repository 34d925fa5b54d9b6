"""Tagging: a label list scored against every image, and the approvals kept apart.

- `labels`: label files and prompt templates.
- `text`: label text vectors, cached in the store.
- `offline`: the offline tagger's text side (ImageNet classes -> labels; approximate).
- `tags`: the `tags` global pass, `tag_images` and `current_tags`.
- `approvals`: approved labels with their history (who, when, from which tags run).

Importing this package registers the `tags` pass.

Example:
    >>> from lamina.tagging import tag_images, approve
    >>> tag_images(lamina.open(), "labels.txt")["images"]  # doctest: +SKIP
    312
"""

from lamina.tagging.approvals import (
    approval_history,
    approve,
    approve_over_threshold,
    current_approvals,
)
from lamina.tagging.labels import DEFAULT_TEMPLATES, load_labels, normalise_labels
from lamina.tagging.tags import current_tags, tag_images

__all__ = [
    "DEFAULT_TEMPLATES",
    "approval_history",
    "approve",
    "approve_over_threshold",
    "current_approvals",
    "current_tags",
    "load_labels",
    "normalise_labels",
    "tag_images",
]
