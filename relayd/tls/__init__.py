"""
TLS: certificate store, SNI selection, TLS options and ACME (arrives with the
TLS issue).
"""
