"""TLS and mTLS on the OTLP export path, against real TLS receivers on
loopback: a Python HTTPS server (``ssl``) and a grpc server with
``ssl_server_credentials``, with a CA, server and client certificates
generated here (tests/otlp_receivers.py; rotel's options have no TLS
receiver). Settings come from the standard variables, as a user sets them.
"""

from __future__ import annotations

import pytest

import rqa_otel
from otlp_receivers import GrpcReceiver, HttpReceiver, make_pki
from rqa_otel.config.loader import load_settings
from rqa_otel.config.model import SettingsError
from rqa_otel.export.delivery import Outcome, Payload, Value
from rqa_otel.export.otlp.transport import grpc_channel, otlp_transport

RECEIVERS = {"http/protobuf": HttpReceiver, "grpc": GrpcReceiver}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def receiver_factory():
    started = []

    def start(protocol: str, tls=None):
        receiver = RECEIVERS[protocol](tls=tls)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.close()


def send_one(environ: dict[str, str], signal: str = "logs"):
    """Load the settings from ``environ`` and send one request the way every
    exporter does (otlp_transport)."""
    settings = load_settings(environ=environ)
    transport = otlp_transport(signal, settings.export.otlp)
    try:
        return transport.send(Payload(signal, b"", Value.NORMAL, 0), 5.0)
    finally:
        transport.shutdown()


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_the_receiver_is_verified_against_the_given_ca(pki, receiver_factory, protocol):
    receiver = receiver_factory(protocol, tls=(pki.server_cert, pki.server_key, None))
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_CERTIFICATE": pki.ca,
    }
    assert send_one(environ).outcome is Outcome.DELIVERED
    assert len(receiver.of("logs")) == 1


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_a_receiver_the_given_ca_did_not_sign_is_refused(pki, receiver_factory, protocol):
    receiver = receiver_factory(protocol, tls=(pki.server_cert, pki.server_key, None))
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_CERTIFICATE": pki.other_ca,
    }
    result = send_one(environ)
    assert result.outcome is not Outcome.DELIVERED
    assert receiver.of("logs") == [], "nothing may reach a receiver whose certificate did not verify"
    if protocol == "http/protobuf":
        assert "CERTIFICATE_VERIFY_FAILED" in result.detail


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_mtls_presents_the_client_certificate(pki, receiver_factory, protocol):
    receiver = receiver_factory(protocol, tls=(pki.server_cert, pki.server_key, pki.ca))
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_CERTIFICATE": pki.ca,
        "OTEL_EXPORTER_OTLP_CLIENT_KEY": pki.client_key,
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": pki.client_cert,
    }
    assert send_one(environ).outcome is Outcome.DELIVERED
    assert [r.peer_subject for r in receiver.of("logs")] == ["rqa-strategy-client"]
    # Without the client certificate the same receiver refuses the handshake.
    del environ["OTEL_EXPORTER_OTLP_CLIENT_KEY"], environ["OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"]
    assert send_one(environ).outcome is not Outcome.DELIVERED
    assert len(receiver.of("logs")) == 1


def test_per_signal_tls_settings_override_the_generic_ones(pki, receiver_factory):
    receiver = receiver_factory("grpc", tls=(pki.server_cert, pki.server_key, None))
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_CERTIFICATE": pki.other_ca,
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": pki.ca,
    }
    assert send_one(environ, "traces").outcome is Outcome.DELIVERED
    assert send_one(environ, "logs").outcome is not Outcome.DELIVERED
    assert [r.signal for r in receiver.requests] == ["traces"]


@pytest.mark.parametrize("spool", [False, True])
def test_setup_exports_over_mtls_with_the_spool_on_and_off(pki, receiver_factory, tmp_path, monkeypatch, spool):
    receiver = receiver_factory("grpc", tls=(pki.server_cert, pki.server_key, pki.ca))
    for name, value in {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_CERTIFICATE": pki.ca,
        "OTEL_EXPORTER_OTLP_CLIENT_KEY": pki.client_key,
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": pki.client_cert,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "otlp",
    }.items():
        monkeypatch.setenv(name, value)
    telemetry = rqa_otel.setup(
        overrides={"export.directory": str(tmp_path), "export.spool.enabled": spool, "resources.enabled": False},
        set_global=False,
    )
    try:
        with telemetry.tracer.start_as_current_span("over-mtls"):
            telemetry.get_logger("tls").warning("over mTLS")
        assert telemetry.force_flush(timeout_s=10)
        receiver.wait_for("traces", "logs")
    finally:
        telemetry.shutdown()
    assert {r.peer_subject for r in receiver.requests} == {"rqa-strategy-client"}


def test_plaintext_grpc_only_where_asked(receiver_factory):
    receiver = receiver_factory("grpc")  # plaintext
    address = f"127.0.0.1:{receiver.port}"
    # No scheme and OTEL_EXPORTER_OTLP_INSECURE=true: plaintext, delivered.
    assert send_one({"OTEL_EXPORTER_OTLP_ENDPOINT": address, "OTEL_EXPORTER_OTLP_INSECURE": "true"}).outcome is Outcome.DELIVERED
    # No scheme and no INSECURE: TLS is attempted, and fails against a
    # plaintext server; it does not fall back to plaintext.
    assert send_one({"OTEL_EXPORTER_OTLP_ENDPOINT": address}).outcome is not Outcome.DELIVERED
    # An https:// endpoint wins over INSECURE (the specification's rule).
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"https://{address}", "OTEL_EXPORTER_OTLP_INSECURE": "true"}
    assert send_one(environ).outcome is not Outcome.DELIVERED
    assert len(receiver.of("logs")) == 1


def test_plaintext_http_endpoint_with_certificates_warns_that_they_are_unused(pki, receiver_factory, caplog):
    receiver = receiver_factory("http/protobuf")
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": pki.ca,
    }
    assert send_one(environ).outcome is Outcome.DELIVERED
    assert any("plaintext (http://)" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def test_grpc_channel_without_a_port_uses_the_scheme_default():
    # Was "host:None", a target grpc cannot resolve.
    channel = grpc_channel("https://localhost")
    try:
        assert channel._channel.target().endswith(b"//localhost:443")
    finally:
        channel.close()


# --- bad input: fails setup() at once, naming the variable, path and reason ----------


@pytest.mark.parametrize("variable", [
    "OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
])
@pytest.mark.parametrize("problem", ["missing", "unreadable", "not PEM"])
def test_a_bad_certificate_or_key_path_fails_setup(tmp_path, monkeypatch, variable, problem):
    path = tmp_path / "file.pem"
    if problem == "missing":
        reason = "No such file or directory"
    elif problem == "unreadable":
        path.mkdir()  # unreadable as a file even for root (chmod 000 is not)
        reason = "Is a directory"
    else:
        path.write_text("just text\n")
        reason = "is not a PEM file"
    monkeypatch.setenv(variable, str(path))
    with pytest.raises(SettingsError) as error:
        rqa_otel.setup(overrides={"export.directory": str(tmp_path)}, set_global=False)
    message = str(error.value)
    assert variable in message and str(path) in message and reason in message


def test_a_client_key_without_its_certificate_fails_setup(pki, tmp_path, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_KEY", pki.client_key)
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otlp")
    with pytest.raises(SettingsError, match="client_key is set for logs but client_certificate is not"):
        rqa_otel.setup(overrides={"export.directory": str(tmp_path)}, set_global=False)
