"""DuckDB views and canned SQL over a dataset (issue: ad hoc SQL and reports; not built yet)."""
