"""What every part is built on: settings, the database, tokens and the clients (Temporal,
store, SMTP, Chromium), built once by the worker and by the API lifespan."""
