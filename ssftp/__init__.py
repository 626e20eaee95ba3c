"""ssftp core: config, data layout, accounts, scanning, claims, the staging queue's policy,
webhooks, logs and errors: everything that decides, in plain Python.

It imports nothing of ours, and neither asyncssh nor Prefect (``tests/test_layering.py``), so
the core is usable and testable on its own, and the layers above (``server``, ``client``,
``flows``, ``deployments``) only do I/O and orchestration around it.
"""
