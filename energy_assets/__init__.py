"""Dagster platform for llm-energy-measure: raw measurements -> cycle statistics -> leaderboard, with lineage."""
