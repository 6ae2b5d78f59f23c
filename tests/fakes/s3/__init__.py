"""A minimal S3 for benchmarks, checked against botocore's S3 model (server.py)."""
