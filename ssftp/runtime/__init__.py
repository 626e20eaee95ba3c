"""A process's lifetime: what ``ssftp up``, ``serve`` and ``worker`` start and stop.

    stop.py            run until SIGINT/SIGTERM; a stop bounded by a deadline
    children.py        daemons started to die with their parent, their console kept
    pid_files.py       what a SIGKILLed predecessor left running is found and stopped
    clamd_daemon.py    clamd started, watched and restarted
    prefect_server.py  the local Prefect server's lifecycle (``ssftp up``)
    listener.py        /metrics and /healthz on a port of their own
    loop_thread.py     an event loop on a thread: the worker beside the server, and tests

Only server/ and deployments/ (and the tools around the product) use it: the pipelines in
ssftp/ never decide how long a process lives.
"""
