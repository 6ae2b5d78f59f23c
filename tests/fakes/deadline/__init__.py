"""A fake AWS Deadline Cloud service held to botocore's own service model."""
