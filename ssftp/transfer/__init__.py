"""The local side of the scheduled transfers (downloaders and uploaders).

    local.py      where a download lands in staging and how a clean file is found, delivered
                  and archived: the file work around the SFTP client's calls (in client/)
    state.py      system/transfers.sqlite: what was fetched, what is being delivered, and the
                  files counted for /metrics
"""
