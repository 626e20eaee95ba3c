"""ssftp.scan.owners: the account (or downloader) a staged file belongs to."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from ssftp.config.schema import SsftpConfig
from ssftp.scan.owners import StagingOwners

# --- staging owners -------------------------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True])
def test_the_longest_owning_directory_wins(reverse):
    staging_dir = [
        {"directory": "a", "auth": {"username": "user-a", "password": "pw"}},
        {"directory": "a/b", "auth": {"username": "user-ab", "password": "pw"}},
    ]
    config = SsftpConfig.model_validate({
        "users": {"stagingDir": staging_dir[::-1] if reverse else staging_dir},
        "sftpClientDownloaders": [
            {"name": "dl", "host": "h", "username": "u", "password": "p",
             "localStagingDirectory": "a/b/c"},
            {"name": "other", "host": "h", "username": "u", "password": "p",
             "localStagingDirectory": "pulled"},
        ],
    })
    owners = StagingOwners(config)
    cases = {
        "a/x.txt": "user-a",
        "a/bc/x.txt": "user-a",
        "a/b/x.txt": "user-ab",
        "a/b/cd/x.txt": "user-ab",
        "a/b/c/x.txt": "downloader:dl",
        "a/b/c/d/x.txt": "downloader:dl",
        "pulled/x.txt": "downloader:other",
        "ab/x.txt": None,
        "unknown/x.txt": None,
        "a": None,
    }
    assert {sub: owners.owner_of(PurePosixPath(sub)) for sub in cases} == cases
