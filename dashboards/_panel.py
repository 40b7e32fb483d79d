"""The report's model: a :class:`Panel` (one chart or table and the query behind it) and
a :class:`Section` (a heading and its panels).

A leaf module: :mod:`rmapscope.dashboards.panels` builds panels, and
:mod:`rmapscope.dashboards._html` renders them; neither imports the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import plotly.graph_objects as go
import polars as pl

#: A big number of the report's header: (value, label, tone) with tone '', good, warn, bad.
Kpi = tuple[str, str, str]


@dataclass
class Panel:
    """One block of the report: its SQL, the frame it returned, and a figure or a table.

    ``sql`` is the text that ran: a named query with its parameters bound, headed by the
    ``rmapscope query`` command line that gives the same rows.
    """

    id: str
    title: str
    sql: str
    frame: pl.DataFrame | None
    figure: go.Figure | None = None
    table_html: str | None = None
    description: str = ""
    note: str = ""
    empty: str = ""
    kpis: list[Kpi] = field(default_factory=list)

    @property
    def has_data(self) -> bool:
        """Whether the query returned rows."""
        return self.frame is not None and self.frame.height > 0


@dataclass(frozen=True)
class Section:
    """A heading and its panels."""

    id: str
    title: str
    panels: Sequence[Panel]
