"""Operations endpoints of a process: /health and /ready (``server``), the
checks behind /ready (``readiness``) and /metrics in Prometheus text format
(``exposition``)."""
