"""Global passes that read whole tables. Importing this package registers them."""

from lamina.analysis import duplicates, flags

__all__ = ["duplicates", "flags"]
