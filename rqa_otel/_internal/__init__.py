"""Implementation details; the public API is in rqa_otel/__init__.py."""
