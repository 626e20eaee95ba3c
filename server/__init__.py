"""The SFTP server (asyncssh): jail, permissions, atomic uploads, limits, defender, portable mode.

Imports the core (``ssftp``) only; nothing here knows about Prefect or the flows.
"""
