"""``rqa-otel agent``: one per host, watches every registered strategy process.

Two processes, so that the part that can hang or crash is not the part that
keeps the agent alive:

- the SUPERVISOR (``supervisor.py``) holds the run directory's agent lock
  (one agent per host and run directory), serves /health /ready /metrics on
  ``--http-port`` (so the port survives a worker's death), starts the
  monitoring worker as a child process and restarts it when it dies: at once
  the first time, then with an exponential backoff (0.5 s doubling, at most
  ``agent.restart_backoff_max_s``) while it keeps dying within 10 s of its
  start;
- the WORKER (``worker.py``) samples every process registered in the run
  directory each interval, exports the per-strategy resource gauges,
  enforces the quotas (``rqa_otel.resources.quota``), and writes its quota
  state and a heartbeat to the run directory after every collection. A new
  worker reads that state back first: open breach episodes stay open (no
  second alert), smoothed readings continue.
"""
