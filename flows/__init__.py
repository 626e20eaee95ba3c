"""Prefect flows and tasks: thin orchestration over :mod:`ssftp` (scan, notify, signature
updates) and :mod:`client` (download, upload), adding runs, retries, artifacts and history."""
