"""Everything that leaves the process, on one send path:

    encoder -> transport -> Delivery (send now, retry within a budget)
                          or Spool   (durable, replayed in order)

``delivery`` holds the contract (Payload, Transport, Sender) and the
SDK-facing exporters that glue an encoder to a sender; ``spool`` the durable
sender; ``otlp`` and ``influx`` the encoders and transports per protocol;
``files`` the local OTLP-JSON and text files; ``exporters`` builds each
signal's exporter or log sink from settings. ``log_entry`` is the log record
format the log pipeline hands over.
"""
