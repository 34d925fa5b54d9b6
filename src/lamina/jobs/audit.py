"""`lamina audit`: the repository audit of a collection with a layout, read-only, from the
store's tables (`lamina.manifest.audit`); never re-reads an image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lamina.core.store import Store
from lamina.manifest.audit import MAX_EXAMPLES, audit_text
from lamina.manifest.audit import audit as audit_tables


@dataclass(frozen=True)
class AuditConfig:
    """What `lamina audit` takes: how many example items to name per broken rule."""

    examples: int = MAX_EXAMPLES


@dataclass
class AuditResult:
    """The audit as data (`report`, what `--json` prints) and as text."""

    report: dict[str, Any]

    @property
    def text(self) -> str:
        return audit_text(self.report)


def audit(store: Store, config: AuditConfig = AuditConfig()) -> AuditResult:
    """Audit the store's items (needs `lamina layout apply` or a scan with a layout).

    Example:
        >>> lamina.audit(lamina.open()).report["items"]  # doctest: +SKIP
        435
    """
    return AuditResult(audit_tables(store, examples=config.examples))
