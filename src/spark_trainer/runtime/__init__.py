"""The job runtime: placement, supervision, reconciliation and job-end events.

The HTTP layer (``jobs/``) calls into it; it never calls the HTTP layer.
"""
