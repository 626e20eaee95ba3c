"""A first end-to-end check: the OpenSSH client uploads into staging with a password and a key."""

from tests.conftest import PARTNER_PASSWORD
from tests.support import run_sftp


def test_password_and_key_upload(gateway, keys, workdir):
    (workdir / "a.txt").write_text("hello")
    result = run_sftp(gateway.port, "partner-a", ["put a.txt", "ls"], cwd=workdir,
                      password=PARTNER_PASSWORD)
    assert result.returncode == 0, result.stderr
    assert (gateway.layout.staging / "partner-a" / "a.txt").read_text() == "hello"
    result = run_sftp(gateway.port, "partner-a", ["put a.txt b.txt"], cwd=workdir,
                      key=keys.partner.private_path)
    assert result.returncode == 0, result.stderr
    assert (gateway.layout.staging / "partner-a" / "b.txt").read_text() == "hello"
