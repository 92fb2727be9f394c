"""Uploads and sources: the browser-to-S3 upload widget's services and URLs, and who may import what."""
