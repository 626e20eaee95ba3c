"""Maintenance commands run with ``python -m scripts.<name>``; no product package imports them."""
