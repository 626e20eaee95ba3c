"""ssftp core: config, data layout, accounts, passwords, logs and the CLI.

Nothing here imports asyncssh or Prefect, so the core is usable (and testable) on its own.
"""
