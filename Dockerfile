# premium-support: one image for every service and operator command.
#   docker build -t premium-support .
#   docker run --rm -e AMQP_URL=amqp://... premium-support run intake
# docker-compose.yml runs the whole stack from it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The project as pyproject.toml describes it (like `make venv`, but not editable and
# with the `postgres` extra for SLA_STORE_URL / NOTIFIER_STORE_URL=postgresql://...).
# README.md is the package's readme in pyproject.toml, so the build needs it.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY schemas ./schemas
RUN python -m pip install '.[postgres]'

# Run as an unprivileged user; /data is where SQLite stores go when no PostgreSQL URL
# is set (sla_timer.db, notifier.db in the working directory).
RUN useradd --system --uid 10001 --user-group --home-dir /data --create-home app
USER app
WORKDIR /data

# /metrics and /healthz (METRICS_PORT)
EXPOSE 9100

ENTRYPOINT ["premium-support"]
CMD ["--help"]
