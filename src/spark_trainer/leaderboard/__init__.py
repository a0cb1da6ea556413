"""The leaderboard: each model's best completed result per benchmark, as JSON or CSV."""
