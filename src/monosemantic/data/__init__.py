"""Text corpora -> documents (`iter_documents`), then tokens packed into fixed-length contexts
(`pack_contexts`, `batch_contexts`)."""

from monosemantic.data.corpus import documents_part, iter_documents
from monosemantic.data.documents import CorpusConfig, CorpusReport, Document
from monosemantic.data.packing import (
    Context,
    ContextBatch,
    batch_contexts,
    bos_token_id,
    pack_contexts,
)

__all__ = [
    "Context",
    "ContextBatch",
    "CorpusConfig",
    "CorpusReport",
    "Document",
    "batch_contexts",
    "bos_token_id",
    "documents_part",
    "iter_documents",
    "pack_contexts",
]
