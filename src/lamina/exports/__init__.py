"""Handing results to people and other tools: the tag table (CSV, Parquet, JSON), XMP
sidecars through exiftool, and the folder medoids CSV. Thumbnails are a pass:
`lamina.passes.thumbs`."""

from lamina.exports.medoids import folder_medoids, write_folder_medoids
from lamina.exports.sidecars import write_sidecars, write_sidecars_for
from lamina.exports.tables import export, export_table

__all__ = [
    "export",
    "export_table",
    "folder_medoids",
    "write_folder_medoids",
    "write_sidecars",
    "write_sidecars_for",
]
