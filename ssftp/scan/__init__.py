"""The scan pipeline: one staged file, from staging to clean/ or quarantine/.

Read it top-down, in the order a file goes::

    queue.py      which staged files are due (settled, not retried too soon, clamd up)
      readiness.py  a file dropped by another writer is scanned once it stops changing
    scanner.py    Scanner.scan, the unit of work:
      claims.py     claim: rename the file out of every client's reach
      examine.py    examine: hash exactly these bytes and ask clamd about them
        clamd.py      the clamd client (a Verdict, never a raise)
        pool.py       several clamds as one: a clamd that dies stops nothing
        signatures.py which engine and database clamd judges with
      router.py     route: where the verdict sends the file (names only; claims.py reserves
                    a quarantine name by writing its verdict record)
      owners.py     whose file it is (the account that staged it)
      record.py     record: the port that stores the audit record and what the outcome owes
                    (ssftp.notify's rule) before the move, and names its Prefect event
                    move: the claim goes to its destination
    results.py    what a scan did with a file: its Area and its ScanResult
    rescan.py     a second look at files already handed on, when the signatures change

Beside it, the signatures clamd judges with, and keeping them fresh::

    signatures.py which database clamd has loaded (VERSION and the generation marker)
    database.py   which clamd and directory an instance updates; ``ssftp up``'s own, seeded
    freshclam.py  one freshclam pass, and the line its failure comes down to
    updates.py    one update: freshclam, RELOAD, and proof clamd loaded the new generation

Nothing here knows asyncssh or Prefect: flows/scan.py runs it, tests call it directly.
"""
