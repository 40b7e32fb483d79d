"""Plotly figures and the HTML report (issue: ad hoc SQL and reports; not built yet)."""
