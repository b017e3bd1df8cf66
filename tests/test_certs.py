"""`reportflow certs make`: the files it writes form a working mTLS chain.

The dev server takes no TLS flags, so the proof is a real handshake on loopback:
Python's ssl module as a server that requires a client certificate from the CA,
and a TLS-terminating proxy in front of the real Temporal dev server, reached by
the SDK with the settings compose gives the API (TEMPORAL_TLS_*, envconfig)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import stat
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.envconfig import ClientConfig
from temporalio.service import TLSConfig
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from reportflow.cli import app, certs
from tests.test_compose import SECRETS, TLS_MOUNT, load_compose, service_env


def make_set(directory: Path) -> Path:
    result = CliRunner().invoke(app, ["certs", "make", str(directory)])
    assert result.exit_code == 0, result.output
    return directory


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_set(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, unrelated set: its client is a stranger to the first CA."""
    return make_set(tmp_path_factory.mktemp("other"))


def server_context(made: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(made / "server.pem", made / "server-key.pem")
    context.load_verify_locations(made / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED  # what TEMPORAL_TLS_REQUIRE_CLIENT_AUTH does
    return context


def client_context(ca: Path, pair: tuple[Path, Path] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca)
    if pair:
        context.load_cert_chain(*pair)
    return context


@contextlib.contextmanager
def one_tls_server(context: ssl.SSLContext) -> Iterator[tuple[int, list[object]]]:
    """Accepts one connection on loopback; records the peer's certificate subject, or
    the handshake's error, in the list it yields with its port."""
    outcome: list[object] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError as error:
            outcome.append(error)
            return
        with conn:
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(30)
                    peer = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")
                    outcome.append(peer.subject.rfc4514_string())
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError) as error:
                outcome.append(error)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], outcome
    finally:
        thread.join(timeout=30)
        listener.close()


def talk(port: int, context: ssl.SSLContext, server_name: str = "temporal") -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        return tls.recv(2)  # under TLS 1.3 a refusal of our certificate shows here


def test_certs_make_writes_keys_for_their_owner_only_and_keeps_an_existing_set(
    tmp_path: Path,
) -> None:
    make_set(tmp_path)
    for name in certs.FILES:
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == (0o600 if name.endswith("-key.pem") else 0o644), (name, oct(mode))
    before = (tmp_path / "ca.pem").read_bytes()
    again = CliRunner().invoke(app, ["certs", "make", str(tmp_path)])
    assert again.exit_code == 0 and "kept" in again.output
    assert (tmp_path / "ca.pem").read_bytes() == before
    forced = CliRunner().invoke(app, ["certs", "make", str(tmp_path), "--force"])
    assert forced.exit_code == 0 and (tmp_path / "ca.pem").read_bytes() != before


def test_certs_make_with_a_group_lets_it_read_the_leaf_keys_but_not_the_ca_key(
    tmp_path: Path,
) -> None:
    group = (tmp_path).stat().st_gid  # one this process may give its files
    certs.make(tmp_path / "tls", ["temporal"], group=group, ca_key=tmp_path / "ca" / "ca-key.pem")
    assert not (tmp_path / "tls" / "ca-key.pem").exists()
    assert stat.S_IMODE((tmp_path / "ca" / "ca-key.pem").stat().st_mode) == 0o600
    for name in ("server-key.pem", "client-key.pem"):
        path = tmp_path / "tls" / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.stat().st_gid == group


def test_certificates_name_the_frontend_and_their_roles(made: Path) -> None:
    server = x509.load_pem_x509_certificate((made / "server.pem").read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"temporal", "localhost"}
    usages = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    # The server pair is also the internode and internal-client identity.
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    client = x509.load_pem_x509_certificate((made / "client.pem").read_bytes())
    assert list(client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    ca = x509.load_pem_x509_certificate((made / "ca.pem").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server.verify_directly_issued_by(ca)
    client.verify_directly_issued_by(ca)


def test_mtls_handshake_with_the_client_pair_succeeds(made: Path) -> None:
    with one_tls_server(server_context(made)) as (port, outcome):
        pair = (made / "client.pem", made / "client-key.pem")
        assert talk(port, client_context(made / "ca.pem", pair)) == b"ok"
    assert outcome == ["CN=reportflow client,O=reportflow"]


def test_mtls_refuses_a_client_without_a_certificate(made: Path) -> None:
    with (
        one_tls_server(server_context(made)) as (port, outcome),
        pytest.raises((ssl.SSLError, ConnectionError)),
    ):
        if talk(port, client_context(made / "ca.pem", None)) == b"":
            raise ConnectionError("closed without an answer")
    assert len(outcome) == 1 and isinstance(outcome[0], ssl.SSLError)
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in str(outcome[0])


def test_mtls_refuses_a_client_certificate_from_another_ca(made: Path, other: Path) -> None:
    with one_tls_server(server_context(made)) as (port, outcome):
        stranger = (other / "client.pem", other / "client-key.pem")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            if talk(port, client_context(made / "ca.pem", stranger)) == b"":
                raise ConnectionError("closed without an answer")
    assert len(outcome) == 1 and isinstance(outcome[0], ssl.SSLError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(outcome[0])


def test_a_client_refuses_a_server_from_another_ca(made: Path, other: Path) -> None:
    with one_tls_server(server_context(other)) as (port, outcome):
        pair = (made / "client.pem", made / "client-key.pem")
        with pytest.raises(ssl.SSLCertVerificationError):
            talk(port, client_context(made / "ca.pem", pair))
    assert len(outcome) == 1 and isinstance(outcome[0], ssl.SSLError | OSError)


class TlsFront:
    """A TLS-terminating proxy on loopback that requires a client certificate (as
    Temporal's frontend does with TEMPORAL_TLS_REQUIRE_CLIENT_AUTH) and passes the
    bytes of each accepted connection to the plaintext dev server behind it."""

    def __init__(self, made: Path, upstream: str) -> None:
        self.context = server_context(made)
        self.context.set_alpn_protocols(["h2"])  # gRPC
        self.upstream_host, port = upstream.rsplit(":", 1)
        self.upstream_port = int(port)
        self.accepted = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        with contextlib.suppress(ConnectionError, ssl.SSLError, RuntimeError):
            writer.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1  # called only once the handshake, client certificate included, passed
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(
            self._connection, "127.0.0.1", 0, ssl=self.context, ssl_handshake_timeout=30
        )
        try:
            yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        finally:
            server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await server.wait_closed()


async def test_sdk_with_the_api_compose_settings_connects_over_mtls_and_without_a_cert_does_not(
    made: Path, temporal_env: WorkflowEnvironment
) -> None:
    upstream = temporal_env.client.service_client.config.target_host
    front = TlsFront(made, upstream)
    async with front.running() as address:
        # The API's own compose environment, its mount pointed at the files made here.
        env = {
            k: v.replace(TLS_MOUNT, str(made))
            for k, v in service_env(load_compose()["services"]["api"], SECRETS).items()
        }
        env["TEMPORAL_ADDRESS"] = address
        config = ClientConfig.load_client_connect_config(disable_file=True, override_env_vars=env)
        client = await Client.connect(**config)
        namespace = await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace="default")
        )
        assert namespace.namespace_info.name == "default"
        assert front.accepted >= 1
        accepted = front.accepted

        tls = config["tls"]
        assert isinstance(tls, TLSConfig)
        no_cert = TLSConfig(server_root_ca_cert=tls.server_root_ca_cert, domain="temporal")
        with pytest.raises(RuntimeError):
            async with asyncio.timeout(60):
                await Client.connect(address, namespace="default", tls=no_cert)
        assert front.accepted == accepted, "a client without a certificate got through"
