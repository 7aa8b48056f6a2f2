"""Small helpers with no knowledge of telemetry: bounded calls
(``deadline``), callbacks that do not keep their owner alive (``weak``),
state a forked child must renew (``fork``)."""
