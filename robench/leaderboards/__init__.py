"""Records -> leaderboard tables (Markdown, CSV, JSON) with the statistics of protocol §6.

`collect_records` reads finished run folders, `leaderboard` / `metric_table` aggregate the
records into one table per (suite, budget, training fraction), `render` turns a board into text.
"""

from robench.leaderboards.collect import collect_records
from robench.leaderboards.render import render
from robench.leaderboards.table import Cell, Column, Leaderboard, Row, Table, leaderboard, metric_table, save_mce_references

__all__ = ["Cell", "Column", "Leaderboard", "Row", "Table", "collect_records", "leaderboard", "metric_table", "render", "save_mce_references"]
