"""OpenAI-compatible Batch API: JSONL files, batches processed in the background through the proxy path."""

from services.gateway.batch.body_limit import PathBodyLimitMiddleware
from services.gateway.batch.jsonl import FileLimits
from services.gateway.batch.service import BatchService
from services.gateway.batch.store import BatchStore
from services.gateway.batch.worker import BatchWorker, WorkerConfig

__all__ = ["BatchService", "BatchStore", "BatchWorker", "FileLimits", "PathBodyLimitMiddleware", "WorkerConfig"]
