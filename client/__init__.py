"""The outbound SFTP side: ssftp as a client of remote servers, for downloaders and uploaders.

``connection`` opens a trusted session (host keys, client keys, asyncssh's errors turned into
:mod:`ssftp.errors`), ``download`` and ``upload`` are the per-file work over that session, and
``kinds`` describes the two kinds of transfer so the flows and deployments above never branch
on a string. Like ``server``, this package uses asyncssh and imports nothing of ours but
:mod:`ssftp`; Prefect stays in ``flows``.
"""
