"""Global passes that read whole tables. Importing this package registers them."""

from lamina.analysis import clusters, duplicates, flags, semantic, semantic_map

__all__ = ["clusters", "duplicates", "flags", "semantic", "semantic_map"]
