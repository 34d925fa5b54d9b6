"""The static HTML report of a store: `build_report(store)` writes `<store>/report/index.html`.

`lamina.report.data` gathers what each section shows (DuckDB over the store),
`lamina.report.plots` draws the plots (matplotlib, PNG) and `lamina.report.build` renders
the page (jinja2) and swaps it into place.
"""

from lamina.report.build import build_report

__all__ = ["build_report"]
