"""The quant logging pipeline: stdlib logging -> bounded buffer -> worker -> sinks."""
