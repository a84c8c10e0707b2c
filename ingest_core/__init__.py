"""The shared core of article-ingest: settings, errors, shared state and the frontier in Redis, URL
canonicalisation, the safe fetcher and the embedded broker.

``producers`` and ``worker`` import it; it imports neither (``tests/test_layering.py`` checks it).
"""
