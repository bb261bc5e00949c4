"""The assets: raw measurements -> cycle statistics -> leaderboard -> site, dataset and Hub export, and their checks."""
