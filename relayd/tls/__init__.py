"""
TLS termination: certificates and the default certificate (material),
TLS options in OpenSSL's terms (options), which options each host gets from
the routers (hosts), the per-generation TLS runtime with its context cache
(store), and the connection creator that picks a context by SNI during the
handshake (creator). ACME arrives later.
"""
