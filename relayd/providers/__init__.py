"""
Providers: one module per source of dynamic configuration, sharing the poll loop
in L{relayd.providers.base}.
"""
