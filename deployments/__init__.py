"""The composition root: the ``ssftp`` command line and the processes it runs (``up``, the
worker with its staging watcher, the Prefect server, the scheduled deployments: transfers and
signature updates). It wires the other packages together; nothing imports it."""
