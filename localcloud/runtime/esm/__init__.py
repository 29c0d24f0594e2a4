"""Kinesis event source mappings run locally with AWS's semantics (see `poller`, `shard`, `batching`)."""

from localcloud.runtime.esm.poller import EventSourceMappingPoller

__all__ = ["EventSourceMappingPoller"]
