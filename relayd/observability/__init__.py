"""
Logs, access logs and metrics.
"""
