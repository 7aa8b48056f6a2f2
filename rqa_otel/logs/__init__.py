"""The logging pipeline: stdlib ``logging`` (and the OTel Logs API) in,
log entries out to the export layer.

The calling thread: ``handler`` (QuantLogHandler: quant attributes, sampling
by ``sampling``) and ``buffer`` (bounded, counts every drop). A worker thread:
``worker`` drains the buffer in batches, scrubs, and hands them to the sinks
that ``rqa_otel.export`` builds. ``sdk_bridge`` feeds OTel Logs API records
into the same buffer; ``assembly`` builds all of it from settings.
"""
