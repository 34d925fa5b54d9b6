"""Model backends: the heavy, optional machinery behind passes (embedders today).

Nothing here imports torch or any model package at module import time; each backend does
so when it loads a model.
"""
