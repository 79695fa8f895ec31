"""ERP/PIM flat files -> Threekit product import entries (importReqBody JSONL).

Public API:

* :func:`load_mapping` / :class:`Mapping` - declarative YAML mappings (``include/mappings``).
* :func:`classify`, :func:`group_batches`, :class:`Batch` - which source a file is, batches by stamp.
* :func:`transform_files` -> :class:`TransformResult` - one batch to JSONL + hashes + errors CSV.
* :func:`validate_entry` (jsonschema) / :func:`check_entry` (fast) - the import entry schema.
* :func:`validate_translations_csv` -> :class:`TranslationsResult` - regional translation CSVs.
"""

from threekit_pipeline.transform.batches import Batch, classify, file_stamp, group_batches
from threekit_pipeline.transform.core import TransformResult, read_skus_by_file, transform_files
from threekit_pipeline.transform.errors import FileRejected, MappingError, TransformError
from threekit_pipeline.transform.mapping import Mapping, SourceMapping, available_mappings, load_mapping
from threekit_pipeline.transform.schema import ENTRY_SCHEMA, check_entry, validate_entry
from threekit_pipeline.transform.translations import TranslationsResult, validate_translations_csv

__all__ = [
    "ENTRY_SCHEMA",
    "Batch",
    "FileRejected",
    "Mapping",
    "MappingError",
    "SourceMapping",
    "TransformError",
    "TransformResult",
    "TranslationsResult",
    "available_mappings",
    "check_entry",
    "classify",
    "file_stamp",
    "group_batches",
    "load_mapping",
    "read_skus_by_file",
    "transform_files",
    "validate_entry",
    "validate_translations_csv",
]
