"""The built-in passes. Importing this package registers each of them, explicitly."""

from lamina.passes import scan

__all__ = ["scan"]
