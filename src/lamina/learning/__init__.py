"""Learning on cached features: labels from the store, leak-free splits, classifier heads
on a stored embedding layer, experiments and their artefacts, and the `predictions` pass.

Jobs (`lamina.jobs.train`, `lamina.jobs.predict`) drive these modules; nothing here writes
outside the store.
"""
