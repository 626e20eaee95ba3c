"""``ssftp update-signatures`` as an operator runs it, against the clamd ``ssftp up`` runs on a
data root (system/clamd, loading system/clamav) and the real freshclam, offline: exit 0 when
clamd loaded new signatures, 1 when nothing changed, 2 with one line when it could not."""

from __future__ import annotations

from ssftp.layout import DataLayout
from ssftp.scan.database import seed
from testkit.openssh_server import free_port
from tests.support.cli import ssftp

CONTENT = b"harmless content of the update-signatures test\n"
SIGNATURE = f"Ssftp.Test.Cli:0:*:{CONTENT.hex()}\n"




def configure(layout: DataLayout, clamav: str) -> None:
    layout.default_config.write_text(f"clamav: {clamav}\n")


def update(layout: DataLayout):
    return ssftp("update-signatures", "--data-dir", str(layout.root))


def test_a_new_signature_exits_0_and_is_found_then_nothing_changed_exits_1(layout, own_clamd,
                                                                            tmp_path):
    site = tmp_path / "site.ndb"
    site.write_text(SIGNATURE)
    configure(layout, f"{{signatures: {{official: false, customUrls: ['{site.as_uri()}']}}}}")
    sample = tmp_path / "sample.txt"
    sample.write_bytes(CONTENT)
    assert ssftp("scan", "--data-dir", str(layout.root), str(sample)).returncode == 0

    updated = update(layout)
    assert updated.returncode == 0, updated.stderr
    [line] = updated.stdout.splitlines()
    before, after = line.split(" -> ")
    assert before != after and after.startswith("ClamAV ")
    found = ssftp("scan", "--data-dir", str(layout.root), str(sample))
    assert found.returncode == 1 and "Ssftp.Test.Cli" in found.stdout

    again = update(layout)
    assert (again.returncode, again.stdout.strip(), again.stderr) == (1, f"unchanged: {after}",
                                                                      "")


def test_the_official_download_failing_is_a_warning(layout, own_clamd, tmp_path):
    """An official mirror that nothing answers (offline whatever the machine): one warning,
    and the custom signature still arrives."""
    site = tmp_path / "site.ndb"
    site.write_text(SIGNATURE)
    configure(layout, f"{{signatures: {{privateMirror: 'http://127.0.0.1:{free_port()}', "
                      f"customUrls: ['{site.as_uri()}']}}}}")

    result = update(layout)

    assert result.returncode == 0
    [warning] = result.stderr.splitlines()
    assert warning.startswith("warning: official signatures not updated: ")
    assert " -> " in result.stdout


def test_a_missing_custom_file_exits_2_with_one_line(layout, own_clamd, tmp_path):
    missing = tmp_path / "missing.ndb"
    configure(layout, f"{{signatures: {{official: false, customUrls: ['{missing.as_uri()}']}}}}")

    result = update(layout)

    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("ssftp update-signatures: custom signatures not updated: ")
    assert str(missing) in line and "Traceback" not in result.stderr


def test_a_clamd_of_the_operators_without_its_directory_exits_2_with_one_line(layout):
    configure(layout, "{address: '127.0.0.1:3310'}")

    result = update(layout)

    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "clamav.signatures.databaseDirectory" in line


def test_no_clamd_exits_2_with_one_line(layout):
    """``ssftp up`` ran once (its database is there) and is not running now."""
    seed(layout.signatures, official=False)
    configure(layout, "{signatures: {official: false}}")

    result = update(layout)

    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("ssftp update-signatures: ") and "does not answer" in line
