"""Which signature database an instance updates, and the one ssftp keeps for its own clamd.

The clamd that ``ssftp up`` starts loads ``system/clamav/`` (:attr:`DataLayout.signatures`):
a directory of ssftp's own, because freshclam must write where clamd loads, and neither the
shipped test signatures (package data, read-only once installed) nor ``/var/lib/clamav``
(Debian's freshclam's) are ssftp's to write. The first start seeds it (:func:`seed`) so that
clamd starts at once, without waiting for a download that offline never comes.

A clamd the operator runs (``clamav.address``) loads a directory that only the operator knows:
``clamav.signatures.databaseDirectory`` names it, and without it ssftp does not update that
clamd's signatures (:func:`update_target` says so).

freshclam never deletes what a custom URL once gave: a URL taken out of ``customUrls`` (a
signature that turned out to be a false positive) would go on matching. So each update
remembers the files its custom URLs give, and removes those that no URL gives any more
(:func:`drop_custom_files`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from ssftp.addresses import ClamdAddress
from ssftp.config.schema import SsftpConfig
from ssftp.errors import SignatureUpdateError
from ssftp.layout import TEMP_PREFIX, DataLayout
from ssftp.scan.signatures import database_files, write_generation

TEST_SIGNATURES = Path(__file__).resolve().parents[1] / "clamav" / "test-signatures"
# Where Debian's clamav-freshclam keeps the official databases.
SYSTEM_DATABASE = Path("/var/lib/clamav")
OFFICIAL_SUFFIXES = (".cvd", ".cld")
# In an update's run directory: the files the custom URLs gave, one name a line.
CUSTOM_FILES = "custom-files"


@dataclass(frozen=True)
class UpdateTarget:
    """A clamd whose signatures ssftp updates, and the directory it loads them from."""

    address: ClamdAddress
    database: Path
    # freshclam's config and pid files, and the lock of one update at a time.
    run_dir: Path


def updatable(config: SsftpConfig) -> bool:
    """Whether ssftp can update the signatures of the clamd this config scans with: its own
    (no ``clamav.address``), or one whose ``databaseDirectory`` it is told (where
    :func:`update_target` finds a target); none when clamd is switched off."""
    return config.clamav.enabled and (
        config.clamav.address is None
        or (isinstance(config.clamav.address, str)
            and config.clamav.signatures.database_directory is not None))


def update_target(config: SsftpConfig, layout: DataLayout) -> UpdateTarget:
    """The clamd this instance scans with and its database directory; raises
    SignatureUpdateError when ssftp cannot update it (a clamd of the operator's, without
    ``databaseDirectory``)."""
    settings = config.clamav
    if not settings.enabled:
        raise SignatureUpdateError("clamd is switched off (clamav.enabled: false): there are "
                                   "no clamd signatures to update")
    if settings.address is None:
        return UpdateTarget(ClamdAddress(unix_path=str(layout.clamd_socket)), layout.signatures,
                            layout.freshclam)
    if isinstance(settings.address, list):
        raise SignatureUpdateError(
            "the signatures of a pool of clamds (clamav.address is a list) are not ssftp's to "
            "update: each clamd's own freshclam keeps them (one RELOAD would not reach all)")
    directory = settings.signatures.database_directory
    if directory is None:
        raise SignatureUpdateError(
            f"the signatures of the clamd at {settings.address} (clamav.address) are not "
            "ssftp's to update: set clamav.signatures.databaseDirectory to the directory it "
            "loads (writable by ssftp), or update them with its own freshclam")
    return UpdateTarget(ClamdAddress.parse(settings.address), Path(directory), layout.freshclam)


def official_files(directory: Path) -> list[Path]:
    """The official databases (``main``, ``daily``, ``bytecode``: ``.cvd``/``.cld``) there."""
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.iterdir()
                  if path.suffix in OFFICIAL_SUFFIXES and path.is_file())


def seed(directory: Path, *, official: bool, system: Path = SYSTEM_DATABASE) -> Path:
    """Create ``directory`` on the first start: the shipped test signatures (EICAR), and, with
    ``official``, copies of the official databases that Debian's freshclam left in ``system``;
    then its generation. A directory that has signature files already is left alone: it is
    the one freshclam updates. Each file is copied to a temp name and renamed, so a start cut
    short leaves no half a file that clamd would load."""
    directory.mkdir(parents=True, exist_ok=True)
    if database_files(directory):
        return directory
    sources = [path for path in TEST_SIGNATURES.iterdir() if path.suffix in (".hdb", ".ndb")]
    if official:
        sources += official_files(system)
    for source in sources:
        temp = directory / f"{TEMP_PREFIX}{source.name}.tmp"  # no suffix clamd loads
        shutil.copyfile(source, temp)
        temp.replace(directory / source.name)
    write_generation(directory)
    return directory


def custom_file_name(url: str) -> str:
    """The name freshclam gives the file of a custom URL: the last part of its path."""
    return PurePosixPath(urlsplit(url).path).name


def drop_custom_files(target: UpdateTarget, urls: Iterable[str]) -> list[str]:
    """Remove from the database the files that earlier updates fetched from custom URLs that
    ``urls`` no longer has; remember the files ``urls`` give. Only those: the official
    databases, the seeded test signatures and files put there by others are never touched."""
    wanted = {custom_file_name(url) for url in urls}
    record = target.run_dir / CUSTOM_FILES
    earlier = set(record.read_text().split()) if record.exists() else set()
    dropped = sorted(name for name in earlier - wanted if not name.endswith(OFFICIAL_SUFFIXES))
    for name in dropped:
        (target.database / name).unlink(missing_ok=True)
    target.run_dir.mkdir(parents=True, exist_ok=True)
    temp = target.run_dir / f"{CUSTOM_FILES}.tmp"
    temp.write_text("".join(f"{name}\n" for name in sorted(wanted)))
    temp.replace(record)
    return dropped
