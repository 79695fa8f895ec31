"""A robust FTP/FTPS client for unattended file exchange.

:class:`FtpClient` keeps one control connection and reconnects transparently when the
server drops it (``421`` idle timeouts, resets, EOF). Operations that are safe to repeat
are retried with exponential backoff; the others (rename, delete, move) check on a retry
whether their first attempt already took effect, so they converge instead of failing.

* Downloads stream in constant memory to ``<name>.part`` and are renamed when complete;
  after a dropped connection they resume with ``REST``.
* Uploads go to a hidden temporary name in the target directory and are renamed into
  place once their size is verified, so readers never see half a file under the final name.
* FTPS is explicit (AUTH TLS) with ``PROT P``; certificates and host names are verified
  unless explicitly disabled. Data connections reuse the control connection's TLS session
  when the server offers one (some servers require it).
* Listings use MLSD when the server offers it (FEAT), else one ``LIST`` parsed for names,
  sizes and times (Unix and Windows/IIS styles); only lines that cannot be parsed cost a
  ``SIZE`` + ``MDTM`` each. A name the connection's encoding cannot decode is skipped
  with a warning; a missing folder is :class:`FtpNotFound` on every server.

Instances are not thread-safe: use one client per thread.
"""

from __future__ import annotations

import errno
import ftplib
import functools
import io
import logging
import os
import posixpath
import socket
import ssl
import stat as stat_module
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

from threekit_pipeline.ftp.errors import FtpError, FtpNotFound, FtpPermanentError, FtpTransientError
from threekit_pipeline.ftp.models import FtpSettings, RemoteFile
from threekit_pipeline.ftp.paths import join_remote, part_path
from threekit_pipeline.ftp.transfer import ProgressCallback, TransferClientBase

log = logging.getLogger(__name__)

#: Transfer block size; large blocks matter on high-latency links (and FTPS record overhead).
BLOCK_SIZE = 256 * 1024
#: Bytes per sendfile() call on plain uploads (progress is reported between calls).
SENDFILE_CHUNK = 1024 * 1024
#: Reply codes that mean "try again": service closing, can't open data connection,
#: transfer aborted, file unavailable (busy), local processing error.
RETRYABLE_CODES = frozenset({421, 425, 426, 450, 451})
#: Replies meaning "command not implemented / not understood / bad parameter".
UNSUPPORTED_CODES = frozenset({500, 501, 502, 504})

_MIB = 1024 * 1024
_NETWORK_ERRNOS = frozenset({
    errno.ECONNRESET, errno.ECONNABORTED, errno.ECONNREFUSED, errno.EPIPE, errno.ETIMEDOUT,
    errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.ENOTCONN,
})
_unverified_hosts_warned: set[str] = set()

T = TypeVar("T")


# --- ftplib subclasses ------------------------------------------------------------------------


class _PlainFTP(ftplib.FTP):
    """ftplib.FTP with a separate timeout for data connections."""

    data_timeout: float | None = None

    def ntransfercmd(self, cmd, rest=None):
        conn, size = super().ntransfercmd(cmd, rest)
        conn.settimeout(self.data_timeout)
        return conn, size


class _TlsFTP(ftplib.FTP_TLS):
    """ftplib.FTP_TLS with TLS session reuse on data connections and a data timeout."""

    data_timeout: float | None = None

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            session = getattr(self.sock, "session", None)
            try:
                try:
                    conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
                except ValueError:
                    # The session cannot be reused with this socket; a full handshake still works.
                    conn = self.context.wrap_socket(conn, server_hostname=self.host)
            except BaseException:
                conn.close()
                raise
        conn.settimeout(self.data_timeout)
        return conn, size


# --- helpers ----------------------------------------------------------------------------------


def _reply_code(exc: BaseException) -> int | None:
    text = str(exc.args[0]) if exc.args else ""
    head = text[:3]
    return int(head) if head.isdigit() else None


def _is_network_error(exc: BaseException) -> bool:
    if isinstance(exc, (EOFError, ConnectionError, TimeoutError, socket.timeout, ssl.SSLError, socket.gaierror)):
        return True
    return isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS


def parse_ftp_time(value: str | None) -> datetime | None:
    """Parse an MLSD ``modify`` fact or MDTM reply (``YYYYMMDDHHMMSS[.fff]``, UTC)."""
    if not value:
        return None
    value = value.strip()
    main, _, fraction = value.partition(".")
    try:
        moment = datetime.strptime(main[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    if fraction.isdigit():
        moment = moment.replace(microsecond=int(fraction[:6].ljust(6, "0")))
    return moment


def parse_list_line(line: str) -> tuple[str, int | None, datetime | None, bool] | None:
    """``(name, size, modified, is_dir)`` of one ``LIST`` line, or None when it cannot be parsed.

    Unix (``ls -l``) and Windows/IIS (``MM-DD-YY hh:mmAM``) styles, parsed by ftputil's
    parsers. Times are read as UTC and have the precision the style gives: minutes for
    recent files, days for files older than about six months. A line that carries no entry
    (``total 12``) gives the name ``""``.
    """
    from ftputil.error import ParserError

    for parser in _list_parsers():
        if parser.ignores_line(line):
            return "", None, None, False
        try:
            result = parser.parse_line(line, time_shift=0.0)
        except ParserError:
            continue
        name = result._st_name
        if not name:
            return None
        modified = datetime.fromtimestamp(result.st_mtime, UTC) if result.st_mtime is not None else None
        return name, result.st_size, modified, stat_module.S_ISDIR(result.st_mode or 0)
    return None


@functools.cache
def _list_parsers() -> tuple:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import ftputil.stat

    return ftputil.stat.UnixParser(), ftputil.stat.MSParser()


def _human(size: int | None) -> str:
    if size is None:
        return "unknown size"
    if size < 1024:
        return f"{size} B"
    if size < _MIB:
        return f"{size / 1024:.1f} KiB"
    return f"{size / _MIB:.1f} MiB"


class _TransferProgress:
    """Logs progress of long transfers every ~10 % or 10 s and forwards to a callback."""

    def __init__(self, verb: str, path: str, callback: ProgressCallback | None) -> None:
        self.verb = verb
        self.path = path
        self.callback = callback
        self.started = time.monotonic()
        self._last_log = self.started
        self._next_percent = 10

    def update(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        percent = done * 100 // total if total else None
        due_by_percent = percent is not None and self._next_percent <= percent < 100 and total >= _MIB
        if due_by_percent or now - self._last_log >= 10:
            log.info("%s %s: %s of %s%s", self.verb, self.path, _human(done), _human(total),
                     f" ({percent}%)" if percent is not None else "")
            self._last_log = now
            if percent is not None:
                self._next_percent = (percent // 10 + 1) * 10
        if self.callback is not None:
            self.callback(done, total)

    def finished(self, verb: str, nbytes: int, extra: str = "") -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        log.info("%s %s: %s in %.2f s (%.2f MiB/s)%s", verb, self.path, _human(nbytes), elapsed,
                 nbytes / elapsed / _MIB, extra)


# --- client -----------------------------------------------------------------------------------


class FtpClient(TransferClientBase[ftplib.FTP]):
    """FTP/FTPS client with transparent reconnects, retries, atomic uploads and resumable downloads.

    Use as a context manager, or call :meth:`close`. Remote paths are POSIX paths; relative
    paths are relative to the login directory.
    """

    protocol = "FTP"
    log = log

    def __init__(self, settings: FtpSettings) -> None:
        self.settings = settings
        self._ftp: ftplib.FTP | None = None
        self._features: frozenset[str] = frozenset()
        self._home = "/"

    def __repr__(self) -> str:
        scheme = "ftps" if self.settings.tls else "ftp"
        state = "connected" if self._ftp is not None else "idle"
        return f"FtpClient({scheme}://{self.settings.user}@{self.settings.address}, {state})"

    # --- connection ---------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        settings = self.settings
        if settings.verify:
            if settings.ca_file and not os.path.isfile(settings.ca_file):
                raise FtpPermanentError(
                    f"FTP connect to {settings.address}: CA file {settings.ca_file} does not exist",
                    host=settings.address, operation="connect",
                )
            context = ssl.create_default_context(cafile=settings.ca_file)
        else:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            if settings.address not in _unverified_hosts_warned:
                _unverified_hosts_warned.add(settings.address)
                log.warning("TLS certificate verification is DISABLED for %s (verify=False); "
                            "the connection is encrypted but the server is not authenticated", settings.address)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def _connect(self, operation: str, path: str) -> ftplib.FTP:
        settings = self.settings
        ftp: ftplib.FTP
        if settings.tls:
            ftp = _TlsFTP(context=self._ssl_context(), timeout=settings.connect_timeout, encoding=settings.encoding)
        else:
            ftp = _PlainFTP(timeout=settings.connect_timeout, encoding=settings.encoding)
        ftp.data_timeout = settings.data_timeout
        login_stage = False
        try:
            ftp.connect(settings.host, settings.port, timeout=settings.connect_timeout)
            if isinstance(ftp, ftplib.FTP_TLS):
                self._start_tls(ftp)
            login_stage = True
            ftp.login(settings.user, settings.password)
            login_stage = False
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.prot_p()
            ftp.set_pasv(settings.passive)
            self._features = self._read_features(ftp)
            if "UTF8" in self._features and settings.encoding.lower().replace("-", "") == "utf8":
                try:
                    ftp.sendcmd("OPTS UTF8 ON")
                except ftplib.error_perm:
                    pass  # UTF-8 is the default on servers that list it; the OPTS is a courtesy
            ftp.voidcmd("TYPE I")  # binary: SIZE is refused in ASCII mode by many servers
            try:
                self._home = ftp.pwd() or "/"
            except ftplib.Error:
                self._home = "/"
        except BaseException as exc:
            ftp.close()
            error = self._translate(exc, operation, path, during_login=login_stage)
            if error is None or error is exc:
                raise
            raise error from exc
        log.debug("Connected to %s as %s (%s, %s mode, features: %s)", settings.address, settings.user,
                  "FTPS" if settings.tls else "FTP", "passive" if settings.passive else "active",
                  " ".join(sorted(self._features)) or "none")
        return ftp

    def _start_tls(self, ftp: ftplib.FTP_TLS) -> None:
        """``AUTH TLS`` as its own step, so a server without FTPS is not reported as a refused login.

        (Several servers, vsftpd among them, answer an ``AUTH TLS`` they do not support with
        ``530``, the code of a refused login.)
        """
        try:
            ftp.auth()
        except (ftplib.error_perm, ftplib.error_temp, ftplib.error_reply) as exc:
            reply = self._scrub(str(exc).strip())
            raise FtpPermanentError(
                f"FTP connect on {self.settings.address}: the server refused AUTH TLS ({reply}); it does not "
                "offer explicit FTPS on this port. Use a plain ftp connection (extra tls=false) only if "
                "unencrypted transfers are acceptable, or ask the partner to enable FTPS",
                host=self.settings.address, operation="connect", code=_reply_code(exc)) from exc

    @staticmethod
    def _read_features(ftp: ftplib.FTP) -> frozenset[str]:
        try:
            reply = ftp.sendcmd("FEAT")
        except ftplib.error_perm:
            return frozenset()
        features = set()
        for line in reply.splitlines()[1:-1]:
            words = line.strip().split()
            if words:
                features.add(words[0].upper())
        return frozenset(features)

    def _session(self, operation: str = "connect", path: str = "") -> ftplib.FTP:
        if self._ftp is None:
            self._ftp = self._connect(operation, path)
        return self._ftp

    def _discard(self) -> None:
        ftp, self._ftp = self._ftp, None
        if ftp is not None:
            try:
                ftp.close()
            except OSError:
                pass

    def close(self) -> None:
        """Log out and close the connection (best effort); the client may be used again."""
        ftp, self._ftp = self._ftp, None
        if ftp is None:
            return
        try:
            ftp.quit()
        except (OSError, EOFError, ftplib.Error):
            pass
        finally:
            ftp.close()

    @property
    def features(self) -> frozenset[str]:
        """FEAT keywords of the server (connects if needed)."""
        self._retrying("feature check", "", lambda ftp: None)
        return self._features

    def _has_mlst(self) -> bool:
        return "MLST" in self._features or "MLSD" in self._features

    # --- errors and retries -------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        password = self.settings.password
        return text.replace(password, "***") if password else text

    def _translate(self, exc: BaseException, operation: str, path: str,
                   during_login: bool = False) -> FtpError | None:
        """The :class:`FtpError` for ``exc``, or None when it is not an FTP/network problem."""
        if isinstance(exc, FtpError):
            return exc
        settings = self.settings
        subject = f"FTP {operation}{f' {path!r}' if path else ''} on {settings.address}"
        context = {"host": settings.address, "operation": operation, "path": path}
        if isinstance(exc, ssl.SSLCertVerificationError):
            reason = getattr(exc, "verify_message", "") or str(exc)
            return FtpPermanentError(self._scrub(
                f"{subject}: TLS certificate verification failed ({reason}); trust the server's CA with "
                "ca_file, or fix the server certificate (host name must match)"), **context)
        if isinstance(exc, ftplib.error_perm):
            code = _reply_code(exc)
            reply = self._scrub(str(exc).strip())
            if code == 530 or during_login:
                return FtpPermanentError(f"{subject}: login as {settings.user!r} refused ({reply})", code=code,
                                         **context)
            if code == 550:
                return FtpNotFound(f"{subject}: not found or not accessible ({reply})", code=code, **context)
            return FtpPermanentError(f"{subject}: refused by the server ({reply})", code=code, **context)
        if isinstance(exc, ftplib.error_temp):
            reply = self._scrub(str(exc).strip())
            return FtpTransientError(f"{subject}: temporary failure ({reply})", code=_reply_code(exc), **context)
        if isinstance(exc, (ftplib.error_reply, ftplib.error_proto)):
            reply = self._scrub(str(exc).strip())
            return FtpTransientError(f"{subject}: unexpected reply ({reply})", code=_reply_code(exc), **context)
        if _is_network_error(exc):
            detail = self._scrub(str(exc)) or type(exc).__name__
            if isinstance(exc, EOFError):
                detail = "the server closed the connection"
            elif isinstance(exc, (socket.timeout, TimeoutError)):
                detail = f"timed out ({detail})"
            return FtpTransientError(f"{subject}: connection problem: {detail}", **context)
        return None

    def _retrying(self, operation: str, path: str, attempt: Callable[[ftplib.FTP], T],
                  retry_state: dict | None = None) -> T:
        """Run ``attempt(session)``, reconnecting and retrying on transient failures."""
        attempts = self.settings.retries + 1
        for number in range(1, attempts + 1):
            if retry_state is not None:
                retry_state["attempt"] = number
            try:
                return attempt(self._session(operation, path))
            except BaseException as exc:
                # A 5xx reply leaves the control connection in sync; anything else (drop, timeout,
                # an exception in the middle of a transfer) may not, so start from a fresh one.
                if not isinstance(exc, ftplib.error_perm):
                    self._discard()
                error = self._translate(exc, operation, path)
                if error is None:
                    raise
                if not isinstance(error, FtpTransientError) or number >= attempts:
                    if error is exc:
                        raise
                    raise error from exc
                delay = self.settings.retry_backoff * (2 ** (number - 1))
                log.warning("%s; reconnecting and retrying in %.1f s (attempt %d of %d)", error, delay,
                            number + 1, attempts)
                time.sleep(delay)
        raise AssertionError("unreachable")

    # --- metadata -----------------------------------------------------------------------

    @staticmethod
    def _binary_mode(ftp: ftplib.FTP) -> None:
        # ftplib switches to TYPE A for listings; SIZE is refused in ASCII mode by many servers.
        ftp.voidcmd("TYPE I")

    def _is_dir(self, ftp: ftplib.FTP, path: str) -> bool:
        try:
            ftp.cwd(path)
        except ftplib.error_perm:
            return False
        ftp.cwd(self._home)
        return True

    def _size_or_none(self, ftp: ftplib.FTP, path: str) -> int | None:
        """SIZE of a file; None when the server cannot tell (unsupported, directory, missing)."""
        try:
            reply = ftp.sendcmd(f"SIZE {path}")
        except ftplib.error_perm:
            return None
        try:
            return int(reply[3:].strip())
        except ValueError:
            return None

    def _mdtm_or_none(self, ftp: ftplib.FTP, path: str) -> datetime | None:
        try:
            reply = ftp.sendcmd(f"MDTM {path}")
        except ftplib.error_perm:
            return None
        return parse_ftp_time(reply[4:])

    @staticmethod
    def _from_facts(path: str, name: str, facts: dict[str, str]) -> RemoteFile:
        kind = facts.get("type", "file").lower()
        is_dir = kind in ("dir", "cdir", "pdir")
        raw_size = facts.get("size") if not is_dir else None
        try:
            size = int(raw_size) if raw_size is not None else None
        except ValueError:
            size = None
        return RemoteFile(path=path, name=name, size=size, modified=parse_ftp_time(facts.get("modify")),
                          is_dir=is_dir)

    def _stat_on(self, ftp: ftplib.FTP, path: str) -> RemoteFile | None:
        if self._has_mlst():
            try:
                reply = ftp.sendcmd(f"MLST {path}")
            except ftplib.error_perm as exc:
                if _reply_code(exc) == 550:
                    return None
                raise
            lines = [line for line in reply.splitlines()[1:-1] if line.strip()]
            if lines:
                fact_text = lines[0].strip().split(" ", 1)[0]
                facts = {}
                for fact in fact_text.split(";"):
                    key, sep, value = fact.partition("=")
                    if sep:
                        facts[key.lower()] = value
                return self._from_facts(path, self._name_of(path), facts)
        size = self._size_or_none(ftp, path)
        modified = self._mdtm_or_none(ftp, path)
        if size is not None:
            return RemoteFile(path=path, name=self._name_of(path), size=size, modified=modified)
        if self._is_dir(ftp, path):
            return RemoteFile(path=path, name=self._name_of(path), size=None, modified=modified, is_dir=True)
        if modified is not None:
            return RemoteFile(path=path, name=self._name_of(path), size=None, modified=modified)
        return None

    def stat(self, path: str) -> RemoteFile | None:
        """Metadata of one remote file or directory; None when it does not exist."""
        return self._retrying("stat", path, lambda ftp: self._stat_on(ftp, path))

    def exists(self, path: str) -> bool:
        """True when the remote file or directory exists."""
        return self.stat(path) is not None

    def _listing_lines(self, ftp: ftplib.FTP, command: str, path: str) -> list[str]:
        """Lines of a listing's data connection, decoded one by one with the connection's encoding.

        ftplib decodes a whole listing with one strict codec, so a single name in another
        encoding fails it for every file. Here an undecodable line is skipped with a warning
        naming the folder and the ``encoding`` extra, and the other entries are returned.
        """
        conn = ftp.transfercmd(command)
        chunks: list[bytes] = []
        try:
            while block := conn.recv(BLOCK_SIZE):
                chunks.append(block)
            if isinstance(conn, ssl.SSLSocket):
                conn.unwrap()
        finally:
            conn.close()
        ftp.voidresp()
        lines: list[str] = []
        for raw in b"".join(chunks).split(b"\n"):
            raw = raw.rstrip(b"\r")
            if not raw:
                continue
            try:
                lines.append(raw.decode(self.settings.encoding))
            except UnicodeDecodeError:
                shown = raw.rsplit(b" ", 1)[-1].decode(self.settings.encoding, "backslashreplace")
                log.warning(
                    "Skipped an entry of %s on %s whose name is not valid %s (%s); set the connection's "
                    "'encoding' extra to the server's file name encoding (e.g. cp1252) to see it",
                    path, self.settings.address, self.settings.encoding, shown)
        return lines

    def _missing_if_empty(self, ftp: ftplib.FTP, path: str, entries: list[RemoteFile]) -> None:
        """Some servers (vsftpd) list a missing folder as an empty one: tell the two apart."""
        if not entries and not self._is_dir(ftp, path):
            raise FtpNotFound(f"FTP list {path!r} on {self.settings.address}: folder does not exist",
                              host=self.settings.address, operation="list", path=path, code=550)

    def _list_mlsd(self, ftp: ftplib.FTP, path: str) -> list[RemoteFile]:
        entries: list[RemoteFile] = []
        for line in self._listing_lines(ftp, f"MLSD {path}", path):
            fact_text, _, name = line.partition(" ")
            facts: dict[str, str] = {}
            for fact in fact_text.rstrip(";").split(";"):
                key, _, value = fact.partition("=")
                facts[key.lower()] = value
            kind = facts.get("type", "").lower()
            name = posixpath.basename(name.rstrip("/"))
            if kind in ("cdir", "pdir") or name in ("", ".", ".."):
                continue
            entries.append(self._from_facts(join_remote(path, name), name, facts))
        return entries

    def _list_parsed(self, ftp: ftplib.FTP, path: str) -> list[RemoteFile]:
        """One ``LIST`` parsed for names, sizes and times (Unix and Windows/IIS styles).

        Only when a line cannot be parsed are the names taken from ``NLST`` and the
        unparsed ones completed with ``SIZE``/``MDTM`` (two commands per file).
        """
        entries: list[RemoteFile] = []
        unparsed = False
        for line in self._listing_lines(ftp, f"LIST {path}", path):
            parsed = parse_list_line(line)
            if parsed is None:
                unparsed = True
                continue
            name, size, modified, is_dir = parsed
            name = posixpath.basename(name.rstrip("/"))
            if name in ("", ".", ".."):
                continue
            entries.append(RemoteFile(path=join_remote(path, name), name=name, size=None if is_dir else size,
                                      modified=modified, is_dir=is_dir))
        if unparsed:
            known = {entry.name for entry in entries}
            try:
                names = [line for line in self._listing_lines(ftp, f"NLST {path}", path)]
            except (ftplib.error_perm, ftplib.error_temp) as exc:
                if _reply_code(exc) not in (450, 550):
                    raise
                names = []
            for raw in names:
                name = posixpath.basename(raw.rstrip("/"))
                if name in ("", ".", "..") or name in known:
                    continue
                entry = self._stat_on(ftp, join_remote(path, name))
                if entry is not None:
                    entries.append(entry)
        return entries

    def _list_on(self, ftp: ftplib.FTP, path: str) -> list[RemoteFile]:
        try:
            entries = self._list_mlsd(ftp, path) if self._has_mlst() else self._list_parsed(ftp, path)
        except (ftplib.error_perm, ftplib.error_temp) as exc:
            # Servers answer a listing of a missing folder with 450, 501 or 550, and several
            # answer one of an empty folder with 450/550: ask whether the folder is there.
            if _reply_code(exc) not in (450, 501, 550):
                raise
            if self._is_dir(ftp, path):
                if _reply_code(exc) == 501:
                    raise
                return []
            raise FtpNotFound(f"FTP list {path!r} on {self.settings.address}: folder does not exist "
                              f"({self._scrub(str(exc).strip())})", host=self.settings.address,
                              operation="list", path=path, code=550) from exc
        self._missing_if_empty(ftp, path, entries)
        entries.sort(key=lambda entry: entry.name)
        return entries

    def list_dir(self, path: str) -> list[RemoteFile]:
        """Entries of one remote directory (not recursive), sorted by name."""
        entries = self._retrying("list", path, lambda ftp: self._list_on(ftp, path))
        log.debug("Listed %s on %s: %d entries", path, self.settings.address, len(entries))
        return entries

    # --- directories, renames, deletes --------------------------------------------------

    def makedirs(self, path: str) -> None:
        """Create ``path`` and missing parents (like ``mkdir -p``); existing directories are fine."""

        def attempt(ftp: ftplib.FTP) -> None:
            if self._is_dir(ftp, path):
                return
            absolute = path.startswith("/")
            current = "/" if absolute else ""
            for part in [piece for piece in path.split("/") if piece]:
                current = join_remote(current, part) if current else part
                if self._is_dir(ftp, current):
                    continue
                try:
                    ftp.mkd(current)
                    log.info("Created remote directory %s", current)
                except ftplib.error_perm:
                    if not self._is_dir(ftp, current):  # another client may have just created it
                        raise

        self._retrying("makedirs", path, attempt)

    def rename(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst`` (the server decides whether an existing ``dst`` is replaced)."""
        state: dict = {}

        def attempt(ftp: ftplib.FTP) -> None:
            if state.get("attempt", 1) > 1 and self._stat_on(ftp, src) is None and self._stat_on(ftp, dst):
                return  # the previous attempt went through before the connection dropped
            ftp.rename(src, dst)

        self._retrying("rename", f"{src} -> {dst}", attempt, state)
        log.info("Renamed %s -> %s", src, dst)

    def delete(self, path: str) -> None:
        """Delete a remote file; :class:`FtpNotFound` when it does not exist."""
        state: dict = {}

        def attempt(ftp: ftplib.FTP) -> None:
            try:
                ftp.delete(path)
            except ftplib.error_perm as exc:
                if _reply_code(exc) == 550 and state.get("attempt", 1) > 1 and self._stat_on(ftp, path) is None:
                    return  # deleted by the previous attempt before the connection dropped
                raise

        self._retrying("delete", path, attempt, state)
        log.info("Deleted %s", path)

    def _rename_on(self, ftp: ftplib.FTP, src: str, dst: str) -> None:
        ftp.rename(src, dst)

    def _replace_on(self, ftp: ftplib.FTP, src: str, dst: str) -> None:
        """Rename ``src`` over ``dst``; deletes ``dst`` first if the server refuses to replace it."""
        try:
            ftp.rename(src, dst)
        except ftplib.error_perm as exc:
            if _reply_code(exc) not in (550, 553) or self._stat_on(ftp, dst) is None:
                raise
            log.info("%s refuses to rename over %s; deleting the old file first", self.settings.address, dst)
            ftp.delete(dst)
            ftp.rename(src, dst)

    # --- downloads ----------------------------------------------------------------------

    def download(self, remote: str, local: Path, progress: ProgressCallback | None = None) -> Path:
        """Download ``remote`` to ``local`` and return ``local``.

        Streams in constant memory into ``<local>.part``, resumes with REST after a dropped
        connection, checks the final size against SIZE when the server reports it, then
        renames the part file to ``local``. ``progress(done_bytes, total_or_None)`` is called
        after each block.
        """
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        part = part_path(local)
        part.unlink(missing_ok=True)  # never resume from an unrelated earlier run
        tracker = _TransferProgress("Downloading", remote, progress)
        state: dict[str, Any] = {"version": None, "resumed": 0}

        def attempt(ftp: ftplib.FTP) -> int:
            size = self._size_or_none(ftp, remote)
            # Size and modification time identify the version being downloaded: resuming is only
            # correct while the remote file is the same one.
            version = (size, self._mdtm_or_none(ftp, remote))
            offset = part.stat().st_size if part.exists() else 0
            if offset and state["version"] is not None and version != state["version"]:
                log.warning("%s changed on the server during the download (%s -> %s); starting over",
                            remote, _human(state["version"][0]), _human(size))
                offset = 0
            if size is not None and offset > size:
                offset = 0
            state["version"] = version
            with open(part, "r+b" if part.exists() else "wb") as handle:
                handle.truncate(offset)
                handle.seek(offset)
                if size is None or offset < size:
                    offset = self._retrieve(ftp, remote, handle, offset, size, tracker, state)
            received = part.stat().st_size
            if size is not None and received != size:
                raise FtpTransientError(
                    f"FTP download {remote!r} on {self.settings.address}: received {received} of {size} bytes",
                    host=self.settings.address, operation="download", path=remote)
            return received

        try:
            received = self._retrying("download", remote, attempt)
            os.replace(part, local)
        except OSError as exc:
            part.unlink(missing_ok=True)
            if isinstance(exc, FtpError):
                raise
            # A local failure (disk full, file size limit, permissions): name both ends, keep errno.
            raise OSError(
                exc.errno, f"FTP download {remote!r} to {local}: cannot write the local copy: {exc.strerror or exc}"
            ) from exc
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        extra = f", resumed {state['resumed']} time(s)" if state["resumed"] else ""
        tracker.finished("Downloaded", received, f" to {local}{extra}")
        return local

    def _retrieve(self, ftp: ftplib.FTP, remote: str, handle: IO[bytes], offset: int, size: int | None,
                  tracker: _TransferProgress, state: dict[str, Any]) -> int:
        done = offset

        def write(block: bytes) -> None:
            nonlocal done
            handle.write(block)
            done += len(block)
            tracker.update(done, size)

        if offset:
            log.info("Resuming download of %s at %s of %s", remote, _human(offset), _human(size))
            state["resumed"] += 1
            try:
                ftp.retrbinary(f"RETR {remote}", write, blocksize=BLOCK_SIZE, rest=offset)
                return done
            except ftplib.error_perm as exc:
                if _reply_code(exc) not in UNSUPPORTED_CODES:
                    raise
                log.warning("%s does not support REST; downloading %s from the start", self.settings.address,
                            remote)
                handle.seek(0)
                handle.truncate(0)
                done = 0
        ftp.retrbinary(f"RETR {remote}", write, blocksize=BLOCK_SIZE)
        return done

    def read_bytes(self, remote: str, max_bytes: int = 10_000_000) -> bytes:
        """Content of a small remote file (markers, reports); refuses files over ``max_bytes``."""

        def too_large(size: int) -> FtpPermanentError:
            return FtpPermanentError(
                f"FTP read {remote!r} on {self.settings.address}: {size} bytes or more, over the "
                f"{max_bytes}-byte limit; use download() for large files",
                host=self.settings.address, operation="read", path=remote)

        def attempt(ftp: ftplib.FTP) -> bytes:
            size = self._size_or_none(ftp, remote)
            if size is not None and size > max_bytes:
                raise too_large(size)
            buffer = bytearray()

            def take(block: bytes) -> None:
                buffer.extend(block)
                if len(buffer) > max_bytes:
                    raise too_large(len(buffer))

            ftp.retrbinary(f"RETR {remote}", take, blocksize=BLOCK_SIZE)
            return bytes(buffer)

        data = self._retrying("read", remote, attempt)
        log.debug("Read %s (%d bytes)", remote, len(data))
        return data

    # --- uploads ------------------------------------------------------------------------

    def upload_atomic(self, local: Path, remote: str, progress: ProgressCallback | None = None) -> str:
        """Upload ``local`` to ``remote`` without ever exposing a partial file under ``remote``.

        The data goes to ``.<name>.<random>.part`` in the same directory; once the server
        reports the full size it is renamed to ``remote`` (replacing an existing file). On
        failure the temporary file is removed (best effort) and ``remote`` is untouched.
        Returns ``remote``.
        """
        local = Path(local)
        size = local.stat().st_size
        return self._upload(lambda: open(local, "rb"), size, remote, progress, source=str(local))

    def write_bytes_atomic(self, data: bytes, remote: str) -> str:
        """Write ``data`` to ``remote`` atomically (see :meth:`upload_atomic`); returns ``remote``."""
        return self._upload(lambda: io.BytesIO(data), len(data), remote, None, source=f"{len(data)} bytes")

    def _remove_temps(self, ftp: ftplib.FTP, temps: list[str]) -> None:
        for temp in list(temps):
            try:
                ftp.delete(temp)
            except ftplib.error_perm as exc:
                if _reply_code(exc) != 550:
                    raise
            temps.remove(temp)
            log.info("Removed temporary upload %s", temp)

    def _upload(self, opener: Callable[[], IO[bytes]], size: int, remote: str,
                progress: ProgressCallback | None, source: str) -> str:
        if not self._name_of(remote) or remote.endswith("/"):
            raise ValueError(f"upload target {remote!r} must name a file")
        tracker = _TransferProgress("Uploading", remote, progress)
        leftovers: list[str] = []

        def attempt(ftp: ftplib.FTP) -> None:
            self._remove_temps(ftp, leftovers)  # from an attempt interrupted by a dropped connection
            temp = self._temp_name(remote)
            leftovers.append(temp)
            sent = 0

            def count(block: bytes | int) -> None:
                nonlocal sent
                sent += block if isinstance(block, int) else len(block)
                tracker.update(sent, size)

            with opener() as handle:
                self._store(ftp, f"STOR {temp}", handle, size, count)
            stored = self._size_or_none(ftp, temp)
            if stored is not None and stored != size:
                raise FtpTransientError(
                    f"FTP upload {remote!r} on {self.settings.address}: server holds {stored} of {size} bytes",
                    host=self.settings.address, operation="upload", path=remote)
            self._replace_on(ftp, temp, remote)
            leftovers.remove(temp)

        try:
            self._retrying("upload", remote, attempt)
        except BaseException:
            self._cleanup_after_failure(leftovers)
            raise
        tracker.finished("Uploaded", size, f" from {source}")
        return remote

    @staticmethod
    def _store(ftp: ftplib.FTP, command: str, handle: IO[bytes], size: int,
               count: Callable[[bytes | int], None]) -> str:
        """``STOR`` like ``ftplib.storbinary``, but a plain data connection from a real file uses
        ``sendfile`` (the kernel copies the file to the socket without passing it through Python),
        which is what brings uploads level with curl; TLS connections and in-memory data send
        blocks."""
        try:
            handle.fileno()
            zero_copy = True
        except (AttributeError, OSError, io.UnsupportedOperation):
            zero_copy = False
        ftp.voidcmd("TYPE I")
        with ftp.transfercmd(command) as conn:
            if zero_copy and not isinstance(conn, ssl.SSLSocket):
                offset = handle.tell()
                while offset < size:
                    sent = conn.sendfile(handle, offset, min(SENDFILE_CHUNK, size - offset))
                    if not sent:
                        break
                    offset += sent
                    count(sent)
            else:
                while block := handle.read(BLOCK_SIZE):
                    conn.sendall(block)
                    count(block)
                if isinstance(conn, ssl.SSLSocket):
                    conn.unwrap()
        return ftp.voidresp()

    def _cleanup_after_failure(self, temps: list[str]) -> None:
        if not temps:
            return
        try:
            self._remove_temps(self._session("delete", temps[0]), temps)
        except Exception as exc:  # best effort: the original failure is what the caller needs
            self._discard()
            log.warning("Could not remove temporary upload(s) %s: %s", ", ".join(temps),
                        self._translate(exc, "delete", temps[0]) or type(exc).__name__)
