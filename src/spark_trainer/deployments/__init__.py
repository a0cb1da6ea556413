"""Model deployments: replicas of a model served as long-running jobs behind one endpoint."""
