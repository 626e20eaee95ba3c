"""A data root with scheduled downloaders and uploaders against a real OpenSSH sshd (the
integration conftest's ``sshd``), run through their Prefect flows."""

from __future__ import annotations

from pathlib import Path

import asyncssh

from flows.download import download
from flows.upload import upload
from ssftp.layout import DataLayout
from testkit.openssh_server import OpenSshServer


class Instance:
    """A data root with the client key in system/, and a config file beside it."""

    def __init__(self, root: Path, key: asyncssh.SSHKey, server: OpenSshServer) -> None:
        self.layout = DataLayout.at(root / "data").create()
        key.write_private_key(str(self.layout.system / "id_ed25519"))
        self.server = server
        self.remote = server.sftp_root / root.name
        self.remote.mkdir()
        self.config = root / "ssftp.yaml"

    def entry(self, kind: str, name: str, **extra: object) -> str:
        lines = [f"  - name: {name}", "    host: 127.0.0.1",
                 f"    port: {extra.pop('port', self.server.port)}",
                 f"    username: {self.server.username}",
                 f'    hostKeyFingerprint: "{self.server.fingerprint}"']
        if kind == "download":
            lines += ["    privateKeyPath: id_ed25519", f"    localStagingDirectory: {name}",
                      f"    remoteDirectory: {self.remote.name}"]
        else:
            lines += ["    privatekeyPath: id_ed25519", f"    localDirectoryToUpload: {name}",
                      f"    remoteDirectory: {self.remote.name}"]
        lines += [f"    {key}: {value}" for key, value in extra.items()]
        return "\n".join(lines)

    def write(self, downloaders: list[str] = (), uploaders: list[str] = (), *,
              transfers: str = "retries: 2, retryDelaySeconds: 0.1") -> Path:
        text = (f"instanceName: {self.layout.root.parent.name}\n"
                "enableSftpClientDownloader: true\nenableSftpClientUploader: true\n"
                f"transfers: {{{transfers}, connectTimeoutSeconds: 5}}\n"
                + "sftpClientDownloaders:\n" + ("\n".join(downloaders) or "  []") + "\n"
                + "sftpClientUploaders:\n" + ("\n".join(uploaders) or "  []") + "\n")
        self.config.write_text(text.replace(":\n  []", ": []"))
        return self.config

    async def download(self, name: str) -> list:
        return await download(name=name, config=str(self.config), data_dir=str(self.layout.root))

    async def upload(self, name: str) -> list:
        return await upload(name=name, config=str(self.config), data_dir=str(self.layout.root))
