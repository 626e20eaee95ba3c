"""Benchmarks: ssftp against OpenSSH's sftp server and raw clamd, measured in one run.

``python -m bench`` (see ``bench/__main__.py``); docs/benchmarks.md says what each figure means.
"""
