"""Wiring: the staging watcher that starts scan runs, and the processes that run it."""
