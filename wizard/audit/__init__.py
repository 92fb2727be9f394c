"""The audit log: the hash chain, its outside checkpoint, events as sentences and the history's timeline."""
