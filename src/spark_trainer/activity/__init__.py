"""Live job activity for the dashboard: status changes, published after their commit."""
