# One image for `api`, `worker` and `migrate` (different commands).
# Build: docker build -t reportflow .   (docker compose builds it for you)

# --- build: the locked dependencies, then the project, into /app/.venv ---------
FROM python:3.12.12-slim-bookworm AS build

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The same uv as the Makefile's, from PyPI.
RUN pip install --no-cache-dir uv==0.13.8

WORKDIR /src
# Dependencies first, in a layer of their own: it is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY README.md ./
# The runtime package only: reportflow_dev/ (test stack, chaos, bench) stays out.
COPY reportflow ./reportflow
RUN uv sync --frozen --no-dev --no-editable

# --- runtime: Python, Debian's Chromium and Noto fonts, a non-root user ----------
FROM python:3.12.12-slim-bookworm AS runtime

# Chromium renders the PDFs; Noto covers Latin, Greek, Cyrillic, Arabic, Hebrew
# (fonts-noto-core) and Chinese, Japanese, Korean (fonts-noto-cjk) merchant names.
# Versions follow the pinned Debian release's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium fonts-noto-core fonts-noto-cjk \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid 10001 reportflow \
    && useradd --uid 10001 --gid 10001 --create-home reportflow
# Owned by root: the app cannot rewrite its own code.
COPY --from=build /app/.venv /app/.venv

ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CHROMIUM_EXECUTABLE=/usr/bin/chromium \
    ENVIRONMENT=production \
    HOST=0.0.0.0 \
    PORT=8000

USER 10001:10001
WORKDIR /home/reportflow
EXPOSE 8000 9464
CMD ["reportflow", "api"]
