"""ssftp's core: everything that decides, in plain Python, grouped by pipeline.

    (leaves)   errors, layout, logs, metrics (definitions), moves, file_stamp, names,
               passwords, public_keys, permissions, addresses, procfs, retry_schedule,
               tree_watch, audit_history, run_lock, expiring, published, file_patterns,
               sqlite_files, bans: each imports only other leaves
    config/    ssftp.yaml: schema, loader, rules, accounts, hot reload (imports leaves only)
    scan/      staging -> claim -> examine -> route -> record -> move
    notify/    the notifications an outcome owes, and their outbox
    transfer/  the local side of the scheduled downloads and uploads
    areas/     files once they are in an area: quarantine management (list, release,
               delete) and retention
    runtime/   a process's lifetime (used by server/ and deployments/ only)

Neither asyncssh nor Prefect appears here (``tests/unit/test_layering.py`` checks this and the
rules above), so the core is usable and testable on its own, and the layers above
(``server``, ``client``, ``flows``, ``deployments``) only do I/O and orchestration around it.
"""
