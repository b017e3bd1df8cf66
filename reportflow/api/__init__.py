"""The HTTP front door: a FastAPI app whose routes translate HTTP into calls on the service."""
