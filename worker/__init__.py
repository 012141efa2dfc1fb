"""RQ workers: turn queued batches into rows, exactly once."""
