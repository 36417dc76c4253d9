"""
The runtime: rules compiled to matchers, route tables, and the builder that
turns configuration into one immutable generation.
"""
