"""``ftp-sandbox``: a real FTP/FTPS server (pyftpdlib) for local runs and tests.

One user with full permissions on ``--root``. ``--tls`` turns on explicit FTPS with TLS
required on the control and data connections, using a self-signed certificate for
127.0.0.1/localhost generated on first use. ``--no-mlsd`` hides MLSD/MLST (command table and
FEAT), like vsftpd setups without them, so clients must list with NLST + SIZE + MDTM.

The password may be given with ``--password`` or, to keep it out of process listings, in
the ``FTP_SANDBOX_PASSWORD`` environment variable. It is never logged.

Stdout carries machine-readable lines (``ftp-sandbox certificate: PATH`` then
``ftp-sandbox listening on ftp://HOST:PORT``); logs go to stderr.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

log = logging.getLogger("threekit_pipeline.sandbox.ftp_server")

PASSWORD_ENV = "FTP_SANDBOX_PASSWORD"
CERT_NAME = "ftp-sandbox-cert.pem"
KEY_NAME = "ftp-sandbox-key.pem"
LOOPBACK_NAMES = ("127.0.0.1", "localhost")


def generate_self_signed_cert(certfile: Path, keyfile: Path, names: tuple[str, ...] = LOOPBACK_NAMES,
                              days: int = 30) -> None:
    """Write a self-signed certificate (CN and SAN ``names``) and its private key as PEM.

    The key file is created with mode 0600. IP addresses become IP SAN entries, other names
    DNS entries, so host name verification works for both ``127.0.0.1`` and ``localhost``.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ftp-sandbox")])
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # A year back: a client whose clock is behind the sandbox's still accepts it.
        .not_valid_before(now - timedelta(days=365))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        # CA:TRUE so the certificate itself can be handed to clients as their CA file.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    certfile.parent.mkdir(parents=True, exist_ok=True)
    keyfile.parent.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pem)
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _parse_port_range(text: str) -> range:
    try:
        low, high = (int(part) for part in text.split("-", 1))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected A-B (e.g. 30000-30100), got {text!r}") from exc
    if not 0 < low <= high < 65536:
        raise argparse.ArgumentTypeError(f"invalid passive port range {text!r}")
    return range(low, high + 1)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``ftp-sandbox``."""
    parser = argparse.ArgumentParser(prog="ftp-sandbox", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default)")
    parser.add_argument("--root", type=Path, required=True, help="home directory of the user (created)")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", default=None, help=f"or set {PASSWORD_ENV}")
    parser.add_argument("--tls", action="store_true", help="explicit FTPS, TLS required for control and data")
    parser.add_argument("--certfile", type=Path, default=None, help="PEM certificate (generated when omitted)")
    parser.add_argument("--keyfile", type=Path, default=None, help="PEM private key (generated when omitted)")
    parser.add_argument("--passive-ports", type=_parse_port_range, default=None, metavar="A-B")
    parser.add_argument("--no-mlsd", action="store_true", help="do not offer MLSD/MLST")
    parser.add_argument("--idle-timeout", type=float, default=300.0,
                        help="seconds of control-connection inactivity before '421' and disconnect")
    parser.add_argument("--download-limit", type=int, default=None, metavar="BYTES_PER_S",
                        help="serve downloads at most this fast (plain FTP only): a transfer then takes a "
                             "known time, e.g. for a test that interrupts it half-way")
    return parser


def make_handler(args: argparse.Namespace, certfile: Path | None, keyfile: Path | None) -> type:
    """A handler class configured from the options (subclassed, so pyftpdlib's own classes stay intact)."""
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler

    base: type = FTPHandler
    if args.tls:
        from pyftpdlib.handlers import TLS_FTPHandler

        base = TLS_FTPHandler

    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, args.password, str(args.root), perm="elradfmwMT")

    attributes: dict = {
        "authorizer": authorizer,
        "banner": "ftp-sandbox ready",
        "passive_ports": list(args.passive_ports) if args.passive_ports else None,
        "timeout": args.idle_timeout,
        # pyftpdlib waits 3 s before answering a failed login; shorter keeps test runs quick.
        "auth_failed_timeout": 0.5,
        "permit_foreign_addresses": False,
    }
    if args.no_mlsd:
        attributes["proto_cmds"] = {k: v for k, v in base.proto_cmds.items() if k not in ("MLSD", "MLST")}
    if args.tls:
        attributes.update(certfile=str(certfile), keyfile=str(keyfile), ssl_context=None,
                          tls_control_required=True, tls_data_required=True)
    if getattr(args, "download_limit", None):
        if args.tls:
            raise SystemExit("ftp-sandbox: --download-limit is for plain FTP only")
        from pyftpdlib.handlers import ThrottledDTPHandler

        attributes["dtp_handler"] = type("LimitedDTPHandler", (ThrottledDTPHandler,), {"write_limit": args.download_limit})

    def log_transfer(self, cmd, filename, receive, completed, elapsed, bytes):  # noqa: A002 - pyftpdlib's name
        log.info(
            "transfer user=%s file=%s bytes=%d direction=%s command=%s completed=%s seconds=%.3f",
            self.username, filename, bytes, "upload" if receive else "download", cmd,
            "yes" if completed else "no", elapsed,
        )

    attributes["log_transfer"] = log_transfer
    return type("SandboxFTPHandler", (base,), attributes)


def _request_shutdown(signum: int, _frame: object) -> None:
    # pyftpdlib's serve_forever catches SystemExit, closes every connection and returns.
    log.info("received %s, shutting down", signal.Signals(signum).name)
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; returns the process exit code."""
    args = build_parser().parse_args(argv)
    if args.password is None:
        args.password = os.environ.get(PASSWORD_ENV)
    if not args.password:
        print(f"ftp-sandbox: a password is required (--password or {PASSWORD_ENV})", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from pyftpdlib.servers import FTPServer

    args.root = args.root.resolve()
    args.root.mkdir(parents=True, exist_ok=True)

    certfile = keyfile = None
    if args.tls:
        certfile = args.certfile or args.root.parent / CERT_NAME
        keyfile = args.keyfile or (args.certfile if args.certfile else args.root.parent / KEY_NAME)
        if not certfile.exists():
            if args.certfile:
                print(f"ftp-sandbox: certificate {certfile} does not exist", file=sys.stderr)
                return 2
            generate_self_signed_cert(certfile, keyfile)
            log.info("generated a self-signed certificate for %s at %s", "/".join(LOOPBACK_NAMES), certfile)

    handler = make_handler(args, certfile, keyfile)
    signal.signal(signal.SIGTERM, _request_shutdown)
    signal.signal(signal.SIGINT, _request_shutdown)
    try:
        server = FTPServer((args.host, args.port), handler)
    except SystemExit:
        return 0
    server.max_cons = 64
    host, port = server.address[:2]
    log.info(
        "serving %s on %s:%d for user %s, root %s%s",
        "FTPS (explicit, TLS required)" if args.tls else "FTP",
        host, port, args.user, args.root, ", without MLSD/MLST" if args.no_mlsd else "",
    )
    if certfile is not None:
        print(f"ftp-sandbox certificate: {certfile}", flush=True)
    print(f"ftp-sandbox listening on ftp://{host}:{port}", flush=True)
    server.serve_forever(timeout=0.5, handle_exit=True)
    log.info("ftp-sandbox stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
