"""Batches: many requests made from a manifest, reviewed and followed together."""
