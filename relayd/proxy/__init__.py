"""
Forwarding: the HTTP/1.1 upstream client and pool, forwarded headers, and later
the WebSocket and TCP relays.
"""
