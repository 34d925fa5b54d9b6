"""The built-in passes of the manifest, sensing and embedding, one module each.

Importing a pass module registers its pass; `lamina.catalog` imports every module that
defines a built-in pass (these, and the global passes of `lamina.analysis` and
`lamina.tagging.tags`).
"""
