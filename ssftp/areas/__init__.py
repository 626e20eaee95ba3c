"""What happens to files once they are in an area: an operator's quarantine management and
the retention that removes old files.

    quarantine.py  the names an operator gives (hostile input, held to quarantine/), the
                   inventory read from the verdict records, deleting
    release.py     a release: rescan exactly the bytes to be moved, decide, record (audit,
                   webhooks owed), move to clean/ without replacing, keep the record as history
    retention.py   what is older than its area's days, by when it entered the area; removed
                   with one audit record each

Above scan/ and notify/ (a release rescans, and owes a webhook); nothing here knows Prefect:
flows/quarantine.py and flows/retention.py run it, ``ssftp quarantine`` calls it directly.
"""
