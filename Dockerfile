# One image for every service; the command picks which one runs:
#   docker run IMAGE python -m order_svc     (or orchestrator, inventory_svc, payment_svc, ...)
# Dependencies come from requirements.lock (hashes checked), so an image built twice is
# the same. Rebuild the lock with `make lock` after changing pyproject.toml.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The RDS certificate authorities: the services verify the database's certificate and host
# name (ssl=verify-full, PGSSLROOTCERT; infra/aws_database.tf).
ADD --chmod=644 https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem /etc/ssl/certs/rds-global-bundle.pem

COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock

COPY pyproject.toml ./
COPY libs ./libs
COPY orchestrator ./orchestrator
COPY order_svc ./order_svc
COPY inventory_svc ./inventory_svc
COPY payment_svc ./payment_svc
COPY fulfillment_svc ./fulfillment_svc
COPY notification_svc ./notification_svc
COPY stack ./stack
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin saga

# Every service listens on 8080 on all interfaces inside its container (the task
# definition sets the same); each service reads only the variables with its own prefix.
ENV ORDER_HOST=0.0.0.0 ORDER_PORT=8080 \
    ORCHESTRATOR_HOST=0.0.0.0 ORCHESTRATOR_PORT=8080 \
    INVENTORY_HOST=0.0.0.0 INVENTORY_PORT=8080 \
    PAYMENT_HOST=0.0.0.0 PAYMENT_PORT=8080 \
    FULFILLMENT_HOST=0.0.0.0 FULFILLMENT_PORT=8080 \
    NOTIFICATION_HOST=0.0.0.0 NOTIFICATION_PORT=8080

USER 10001
EXPOSE 8080

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=3)"]

# SIGTERM stops a service gracefully: it stops receiving and finishes in-flight handlers.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "order_svc"]
