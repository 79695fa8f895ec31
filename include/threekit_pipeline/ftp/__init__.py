"""Plain-Python FTP/FTPS client, safe path handling and file-completeness rules (no Airflow imports)."""

from threekit_pipeline.ftp.client import FtpClient
from threekit_pipeline.ftp.completeness import CompletenessPolicy, complete_files
from threekit_pipeline.ftp.errors import FtpError, FtpNotFound, FtpPermanentError, FtpTransientError
from threekit_pipeline.ftp.models import FtpSettings, RemoteFile
from threekit_pipeline.ftp.paths import UnsafeRemoteName, archive_dir_for, join_remote, safe_local_path

__all__ = [
    "CompletenessPolicy",
    "FtpClient",
    "FtpError",
    "FtpNotFound",
    "FtpPermanentError",
    "FtpSettings",
    "FtpTransientError",
    "RemoteFile",
    "UnsafeRemoteName",
    "archive_dir_for",
    "complete_files",
    "join_remote",
    "safe_local_path",
]
