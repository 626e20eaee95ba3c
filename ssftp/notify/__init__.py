"""What a scan outcome owes the world, and delivering it at least once.

    owed.py       the one rule: which webhooks and which Prefect event an outcome owes
    record.py     the worker's recorder (the scanner's port): the audit record, then the
                  webhooks owed in the outbox, before the file moves
    webhooks.py   a notification's payload, its signature and its POST (with a stable id)
    outbox.py     the durable store of notifications owed: written before the file moves,
                  settled when delivered or given up on, so a crash loses none
"""
