"""Tools that the tests and the benchmarks share: a real OpenSSH sshd with internal-sftp, the
real OpenSSH ``sftp`` client in batch mode, client keys, random files, free ports, a throwaway
PostgreSQL.

Not part of the product (``pip install .`` leaves it out) and used by nothing in it.
"""
