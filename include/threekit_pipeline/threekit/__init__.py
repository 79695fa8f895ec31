"""Plain-Python Threekit integration: REST client, batch importer and export building blocks."""

from threekit_pipeline.threekit.client import StreamedFile, ThreekitClient
from threekit_pipeline.threekit.errors import (
    ThreekitAPIError,
    ThreekitAuthError,
    ThreekitError,
    ThreekitJobError,
    ThreekitJobTimeout,
    ThreekitRetryExhausted,
)
from threekit_pipeline.threekit.importer import ImportSummary, import_jsonl

__all__ = [
    "ImportSummary",
    "StreamedFile",
    "ThreekitAPIError",
    "ThreekitAuthError",
    "ThreekitClient",
    "ThreekitError",
    "ThreekitJobError",
    "ThreekitJobTimeout",
    "ThreekitRetryExhausted",
    "import_jsonl",
]
