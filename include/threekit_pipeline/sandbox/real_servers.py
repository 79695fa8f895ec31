"""Real FTP and SFTP daemons for tests and benchmarks: vsftpd, ProFTPD and OpenSSH's sshd.

Each server runs in the foreground on a free loopback port with a configuration, keys,
certificates and logs in its own temporary directory; nothing of the system's own
configuration is used or changed except one unprivileged system account (``tkftp``,
created once, password in a root-only file) that vsftpd and sshd authenticate against
(they log in real users only). The data root is a temporary directory owned by that
account. ``start()`` returns once the port accepts connections and the server greets.

The Debian packages are installed with apt-get when the daemon is absent. vsftpd and
proftpd-core conflict (both provide ``ftp-server``), so ProFTPD is unpacked from its
package into a cache directory instead of being installed when vsftpd is.

Needs root (like the daemons themselves); :func:`available` tells whether this host
can run them.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

ACCOUNT = "tkftp"
_STATE_DIR = Path("/var/lib/threekit-pipeline-tests")
_PROFTPD_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "threekit-pipeline" / "proftpd"
_PROFTPD_LIBS = ("libhiredis0.14", "libmemcached11", "libmemcachedutil2", "libpcre2-posix3")


class RealServerError(RuntimeError):
    """A daemon could not be installed or did not come up (the message has its log's tail)."""


def available() -> bool:
    """True when daemons can be installed and started here (root on a Debian-like system)."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


# --- installation -----------------------------------------------------------------------------


@contextlib.contextmanager
def _lock(name: str):
    _STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(_STATE_DIR / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _apt(*args: str, cwd: Path | None = None) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    command = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "-y", "--no-install-recommends", *args]
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        # The package lists may be missing or stale: refresh once and try again.
        subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update"], env=env, capture_output=True,
                       timeout=900)
        result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RealServerError(f"apt-get {' '.join(args)} failed:\n{result.stderr[-2000:]}")


def _ensure_installed(binary: str, package: str) -> str:
    if os.path.exists(binary):
        return binary
    with _lock("apt"):
        if not os.path.exists(binary):
            log.info("Installing %s (apt-get)", package)
            _apt("install", package)
    if not os.path.exists(binary):
        raise RealServerError(f"{package} is installed but {binary} does not exist")
    return binary


def vsftpd_binary() -> str:
    """Path of vsftpd, installed from Debian's package when absent."""
    return _ensure_installed("/usr/sbin/vsftpd", "vsftpd")


def sshd_binary() -> str:
    """Path of OpenSSH's sshd, installed from Debian's ``openssh-server`` when absent."""
    return _ensure_installed("/usr/sbin/sshd", "openssh-server")


def proftpd_paths() -> tuple[str, str]:
    """``(binary, module directory)`` of ProFTPD with mod_tls; unpacked from its packages when needed."""
    if os.path.exists("/usr/sbin/proftpd") and os.path.exists("/usr/lib/proftpd/mod_tls.so"):
        return "/usr/sbin/proftpd", "/usr/lib/proftpd"
    binary = _PROFTPD_CACHE / "root/usr/sbin/proftpd"
    modules = _PROFTPD_CACHE / "root/usr/lib/proftpd"
    with _lock("apt"):
        if not (binary.exists() and (modules / "mod_tls.so").exists()):
            log.info("Unpacking proftpd-core and proftpd-mod-crypto into %s", _PROFTPD_CACHE)
            _PROFTPD_CACHE.mkdir(parents=True, exist_ok=True)
            _apt("install", *_PROFTPD_LIBS)
            for deb in _PROFTPD_CACHE.glob("*.deb"):
                deb.unlink()
            _apt("download", "proftpd-core", "proftpd-mod-crypto", cwd=_PROFTPD_CACHE)
            for deb in sorted(_PROFTPD_CACHE.glob("*.deb")):
                subprocess.run(["dpkg", "-x", str(deb), str(_PROFTPD_CACHE / "root")], check=True)
        else:
            missing = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
            if "not found" in missing:
                _apt("install", *_PROFTPD_LIBS)
    return str(binary), str(modules)


def system_account() -> tuple[str, int, int, str]:
    """``(name, uid, gid, password)`` of the unprivileged account the daemons log in."""
    secret_file = _STATE_DIR / f"{ACCOUNT}.secret"
    with _lock("account"):
        try:
            entry = pwd.getpwnam(ACCOUNT)
        except KeyError:
            subprocess.run(["useradd", "--system", "--user-group", "--shell", "/bin/bash", "--home-dir",
                            "/tmp", "--no-create-home", ACCOUNT], check=True, capture_output=True)
            entry = pwd.getpwnam(ACCOUNT)
            secret_file.unlink(missing_ok=True)
        if not secret_file.exists():
            password = "tk-" + secrets.token_urlsafe(18)
            subprocess.run(["chpasswd"], input=f"{ACCOUNT}:{password}\n", text=True, check=True,
                           capture_output=True)
            secret_file.write_text(password)
            secret_file.chmod(0o600)
        password = secret_file.read_text().strip()
    return ACCOUNT, entry.pw_uid, entry.pw_gid, password


# --- helpers ----------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_greeting(host: str, port: int, prefix: bytes, deadline: float, alive=lambda: True) -> None:
    """Wait until ``host:port`` accepts a connection whose first bytes start with ``prefix``."""
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not alive():
            raise RealServerError(f"server on port {port} exited while starting")
        try:
            with socket.create_connection((host, port), timeout=5) as sock:
                sock.settimeout(max(1.0, min(10.0, deadline - time.monotonic())))
                data = sock.recv(256)
                if data.startswith(prefix):
                    return
                last = RuntimeError(f"unexpected greeting {data[:60]!r}")
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise RealServerError(f"server on {host}:{port} did not greet in time ({last})")


class _Daemon:
    """A foreground daemon with its own temporary directory, data root and log."""

    name = "daemon"
    greeting = b"220"

    def __init__(self, *, tls: bool = False) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.tls = tls
        self.workdir: Path | None = None
        self.root: Path | None = None
        self.log_file: Path | None = None
        self.cafile: Path | None = None
        self._process: subprocess.Popen | None = None
        self.user, self.uid, self.gid, self.password = system_account()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.host}:{self.port}, tls={self.tls})"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _configure(self) -> None:
        raise NotImplementedError

    def _certificates(self) -> tuple[Path, Path]:
        from threekit_pipeline.sandbox.ftp_server import generate_self_signed_cert

        cert, key = self.workdir / "cert.pem", self.workdir / "key.pem"
        generate_self_signed_cert(cert, key)
        self.cafile = cert
        return cert, key

    def seed(self, relative: str, data: bytes = b"", *, mtime: float | None = None) -> Path:
        """Write a file under the data root as the server's account would (parents created)."""
        target = self.root / relative
        self.mkdir(str(Path(relative).parent))
        target.write_bytes(data)
        os.chown(target, self.uid, self.gid)
        if mtime is not None:
            os.utime(target, (mtime, mtime))
        return target

    def mkdir(self, relative: str) -> Path:
        """A directory under the data root owned by the server's account."""
        current = self.root
        for part in Path(relative).parts:
            if part in ("", "."):
                continue
            current = current / part
            if not current.exists():
                current.mkdir(mode=0o755)
                os.chown(current, self.uid, self.gid)
        return current

    def start(self, timeout: float = 60) -> _Daemon:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"tk-{self.name}-"))
        self.workdir.chmod(0o755)
        self.root = self.workdir / "root"
        self.root.mkdir(mode=0o755)
        os.chown(self.root, self.uid, self.gid)
        self.log_file = self.workdir / f"{self.name}.log"
        for _attempt in range(3):  # the free port may be taken by someone else in between
            self.port = free_port(self.host)
            self._configure()
            self._process = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                wait_for_greeting(self.host, self.port, self.greeting, time.monotonic() + timeout,
                                  alive=lambda: self._process.poll() is None)
                return self
            except RealServerError as exc:
                error = exc
                self._terminate()
        raise RealServerError(f"{self.name} did not start: {error}\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        text = ""
        if self.log_file and self.log_file.exists():
            text = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return text.replace(self.password, "***") if self.password else text

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        if process.stderr:
            process.stderr.close()

    def stop(self) -> None:
        self._terminate()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> _Daemon:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def settings(self, **overrides):
        """:class:`FtpSettings` for this server (FTP daemons only)."""
        from threekit_pipeline.ftp.models import FtpSettings

        values = dict(host=self.host, port=self.port, user=self.user, password=self.password, tls=self.tls,
                      ca_file=str(self.cafile) if self.tls and self.cafile else None, connect_timeout=20.0,
                      data_timeout=30.0, retry_backoff=0.2)
        values.update(overrides)
        return FtpSettings(**values)


class VsftpdServer(_Daemon):
    """vsftpd: no MLSD; with ``tls`` explicit FTPS is required and data connections must reuse
    the control connection's TLS session (``require_ssl_reuse``)."""

    name = "vsftpd"

    def _configure(self) -> None:
        empty = self.workdir / "empty"
        empty.mkdir(exist_ok=True)
        lines = [
            "listen=YES", "listen_ipv6=NO", f"listen_address={self.host}", f"listen_port={self.port}",
            "background=NO", "anonymous_enable=NO", "local_enable=YES", "write_enable=YES", "local_umask=022",
            f"local_root={self.root}", "chroot_local_user=NO", "dirmessage_enable=NO", "use_localtime=NO",
            "xferlog_enable=NO", "seccomp_sandbox=NO", "isolate=NO", "isolate_network=NO",
            f"secure_chroot_dir={empty}", "pam_service_name=vsftpd", "pasv_enable=YES",
            f"pasv_address={self.host}", f"vsftpd_log_file={self.log_file}", "dual_log_enable=NO",
            "userlist_enable=NO",
        ]
        if self.tls:
            cert, key = self._certificates()
            lines += ["ssl_enable=YES", f"rsa_cert_file={cert}", f"rsa_private_key_file={key}",
                      "force_local_logins_ssl=YES", "force_local_data_ssl=YES", "require_ssl_reuse=YES",
                      "ssl_ciphers=HIGH"]
        else:
            lines.append("ssl_enable=NO")
        self.config = self.workdir / "vsftpd.conf"
        self.config.write_text("\n".join(lines) + "\n")

    def _command(self) -> list[str]:
        return [vsftpd_binary(), str(self.config)]


class ProftpdServer(_Daemon):
    """ProFTPD: MLSD; with ``tls`` explicit FTPS is required (session reuse required too)."""

    name = "proftpd"

    def __init__(self, *, tls: bool = False) -> None:
        super().__init__(tls=tls)
        self.password = "pf-" + secrets.token_urlsafe(18)  # its own user file: a password per instance

    def _configure(self) -> None:
        binary, modules = proftpd_paths()
        crypted = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=self.password, text=True,
                                 capture_output=True, check=True).stdout.strip()
        (self.workdir / "passwd").write_text(
            f"{self.user}:{crypted}:{self.uid}:{self.gid}::{self.root}:/bin/sh\n")
        (self.workdir / "group").write_text(f"{self.user}:x:{self.gid}:\n")
        for name in ("passwd", "group"):
            (self.workdir / name).chmod(0o600)
        lines = [
            'ServerName "threekit-test"', "ServerType standalone", "DefaultServer on", f"Port {self.port}",
            f"DefaultAddress {self.host}", "SocketBindTight on", "UseIPv6 off", f"User {self.user}",
            f"Group {self.user}", f"PidFile {self.workdir}/proftpd.pid",
            f"ScoreboardFile {self.workdir}/proftpd.scoreboard", "DelayTable none", "WtmpLog off",
            "TransferLog none", f"SystemLog {self.log_file}", f"ModulePath {modules}",
            "AuthOrder mod_auth_file.c", f"AuthUserFile {self.workdir}/passwd",
            f"AuthGroupFile {self.workdir}/group", "RequireValidShell off", "UseReverseDNS off",
            "TimesGMT on", "MaxInstances 30", "Umask 022",
            "<Directory />", "  AllowOverwrite on", "</Directory>",
        ]
        if self.tls:
            cert, key = self._certificates()
            lines += ["LoadModule mod_tls.c", "TLSEngine on", "TLSProtocol TLSv1.2 TLSv1.3",
                      f"TLSRSACertificateFile {cert}", f"TLSRSACertificateKeyFile {key}", "TLSRequired on",
                      "TLSVerifyClient off", f"TLSLog {self.workdir}/tls.log"]
        self.binary = binary
        self.config = self.workdir / "proftpd.conf"
        self.config.write_text("\n".join(lines) + "\n")

    def _command(self) -> list[str]:
        return [self.binary, "--nodaemon", "-c", str(self.config)]


class SshdServer(_Daemon):
    """OpenSSH's sshd serving only SFTP (``internal-sftp``), password and public-key logins.

    Throwaway ed25519 host key (``host_key_line`` is its known_hosts line) and user key
    (``user_key``, a private key file without passphrase).
    """

    name = "sshd"
    greeting = b"SSH-"

    def _configure(self) -> None:
        if not hasattr(self, "host_key"):
            self.host_key = self.workdir / "ssh_host_ed25519_key"
            self.user_key = self.workdir / "user_ed25519"
            for path in (self.host_key, self.user_key):
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
                               check=True, capture_output=True)
            authorized = self.workdir / "authorized_keys"
            authorized.write_text(Path(str(self.user_key) + ".pub").read_text())
            authorized.chmod(0o644)
        public = Path(str(self.host_key) + ".pub").read_text().split()
        self.host_key_type, self.host_key_base64 = public[0], public[1]
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        lines = [
            f"Port {self.port}", f"ListenAddress {self.host}", f"HostKey {self.host_key}",
            f"PidFile {self.workdir}/sshd.pid", f"AuthorizedKeysFile {self.workdir}/authorized_keys",
            "StrictModes no", "PasswordAuthentication yes", "PubkeyAuthentication yes",
            "KbdInteractiveAuthentication no", "UsePAM no", "PermitRootLogin no", f"AllowUsers {self.user}",
            "Subsystem sftp internal-sftp", f"ForceCommand internal-sftp -d {self.root}",
            "AllowTcpForwarding no", "X11Forwarding no", "LogLevel VERBOSE", "MaxStartups 30:30:60",
            "MaxSessions 30",
        ]
        self.config = self.workdir / "sshd_config"
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def known_hosts_line(self) -> str:
        """This server's ``known_hosts`` entry (``[127.0.0.1]:port type key``)."""
        return f"[{self.host}]:{self.port} {self.host_key_type} {self.host_key_base64}"

    def _command(self) -> list[str]:
        return [sshd_binary(), "-D", "-f", str(self.config), "-E", str(self.log_file)]
