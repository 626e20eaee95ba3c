"""What a scan outcome owes the world, and delivering it at least once.

    webhooks.py   the notifications a result owes, and posting one (signed, with a stable id)
    outbox.py     the durable store of notifications owed: written before the file moves,
                  settled when delivered or given up on, so a crash loses none
"""
