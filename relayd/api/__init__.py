"""
The operator surface served through internal routers: ping, the welcome page,
and (later) the REST API and dashboard.
"""
