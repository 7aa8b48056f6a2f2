# The rqa-otel host agent image (docker-compose.yml service rqa-agent).
# Build context: the repository root.
FROM python:3.12.8-slim
COPY pyproject.toml README.md /src/
COPY rqa_otel /src/rqa_otel
RUN pip install --no-cache-dir /src && rm -rf /src
ENTRYPOINT ["rqa-otel"]
CMD ["agent", "--http-port", "9464"]
