"""Instrumentations of the frameworks quants use (one module per framework)."""
