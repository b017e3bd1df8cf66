"""`reportflow certs make DIR`: a private CA and the mTLS pair for Temporal's frontend.

One CA signs a server certificate (the frontend; also its internode and internal
client identity, so it carries both serverAuth and clientAuth) and one client
certificate (API, workers, Web UI, admin tools). The CA's key is kept beside them,
owner-only, for renewing; no container mounts it. Made with `cryptography` (a
dependency already), so no openssl is needed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

app = typer.Typer()
certs = typer.Typer(no_args_is_help=True)
app.add_typer(
    certs,
    name="certs",
    short_help="mTLS certificates for Temporal: make",
    help="A private CA, a server certificate for Temporal's frontend and a client "
    "certificate for reportflow, the Web UI and the admin tools.",
)

# Names the compose frontend is reached by: its service name inside compose, and
# loopback for an operator's SSH tunnel (`ssh -L 7233:127.0.0.1:7233`).
DEFAULT_HOSTS = ("temporal", "localhost", "127.0.0.1", "::1")
FILES = ("ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem")


@dataclass(frozen=True)
class Made:
    directory: Path
    created: bool  # False: a CA was there already and was kept


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "reportflow"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    days: int,
    *,
    ca: bool,
    usages: list[x509.ObjectIdentifier] | None = None,
    hosts: list[str] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # A few minutes back: a host whose clock is slightly behind still accepts it.
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
    else:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=False, crl_sign=False,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        ).add_extension(x509.ExtendedKeyUsage(usages or []), critical=False)  # fmt: skip
    if hosts:
        builder = builder.add_extension(_san(hosts), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, data: bytes, mode: int, group: int | None) -> None:
    # Created with its final mode: a key is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, mode)  # an existing file keeps its old mode through O_CREAT
    if group is not None:
        os.chown(path, -1, group)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make(
    directory: Path,
    hosts: list[str],
    *,
    days: int = 825,
    group: int | None = None,
    force: bool = False,
    ca_key: Path | None = None,
) -> Made:
    """Write FILES into `directory`. An existing CA is kept unless `force` (so a
    compose one-shot can run this on every `up`). With `group`, the server and
    client keys are readable by that group (containers that run as another user
    join it with `group_add`); the CA key stays owner-only, at `ca_key` (default
    DIR/ca-key.pem: compose keeps it in a volume no server or client mounts)."""
    if (directory / "ca.pem").exists() and not force:
        return Made(directory, created=False)
    directory.mkdir(parents=True, exist_ok=True)
    ca_key_path = ca_key or directory / "ca-key.pem"
    ca_key_path.parent.mkdir(parents=True, exist_ok=True)
    authority_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("reportflow Temporal CA")
    ca = _issue(ca_name, authority_key, ca_name, authority_key, days + 365, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue(
        _name(hosts[0]), server_key, ca_name, authority_key, days, ca=False, hosts=hosts,
        usages=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    )  # fmt: skip
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _issue(
        _name("reportflow client"), client_key, ca_name, authority_key, days, ca=False,
        usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )  # fmt: skip
    key_mode = 0o640 if group is not None else 0o600
    pem = serialization.Encoding.PEM
    _write(ca_key_path, _key_pem(authority_key), 0o600, None)
    _write(directory / "server-key.pem", _key_pem(server_key), key_mode, group)
    _write(directory / "client-key.pem", _key_pem(client_key), key_mode, group)
    _write(directory / "server.pem", server.public_bytes(pem), 0o644, group)
    _write(directory / "client.pem", client.public_bytes(pem), 0o644, group)
    # Last: its presence is what marks the set as complete for the next run.
    _write(directory / "ca.pem", ca.public_bytes(pem), 0o644, group)
    return Made(directory, created=True)


@certs.command(
    "make",
    help="Write ca.pem, server.pem, client.pem and their keys into DIR (kept if "
    "DIR/ca.pem exists, unless --force). Point the server at server.pem (TEMPORAL_TLS_"
    "FRONTEND_CERT) and clients at client.pem (TEMPORAL_TLS_CLIENT_CERT_PATH).",
)
def make_command(
    directory: Annotated[Path, typer.Argument(help="where to write the files")],
    host: Annotated[
        list[str] | None,
        typer.Option(
            help="a name or IP of the frontend, repeatable (default: "
            + ", ".join(DEFAULT_HOSTS)
            + ")"
        ),
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=3650, help="leaf validity")] = 825,
    group: Annotated[
        int | None, typer.Option(help="numeric group that may read the leaf keys")
    ] = None,
    force: Annotated[bool, typer.Option(help="replace an existing set")] = False,
    ca_key: Annotated[
        Path | None, typer.Option(help="where the CA's key goes (default DIR/ca-key.pem)")
    ] = None,
) -> None:
    hosts = host or list(DEFAULT_HOSTS)
    try:
        made = make(directory, hosts, days=days, group=group, force=force, ca_key=ca_key)
    except PermissionError as error:
        sys.stderr.write(f"cannot write the certificates: {error} (--group needs root)\n")
        raise typer.Exit(1) from error
    if made.created:
        sys.stderr.write(f"made a CA and the server and client pairs in {directory}\n")
    else:
        sys.stderr.write(f"{directory}/ca.pem exists: kept (--force to replace)\n")
