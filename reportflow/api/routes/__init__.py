"""One router per resource; each route translates HTTP into a call on the service."""
