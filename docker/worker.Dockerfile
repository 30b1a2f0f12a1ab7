# mathaug worker: a Prefect process worker with mathaug installed, for docker-compose.yml.
# Editable install on purpose: the shipped data/, prompts/ and recipes/ resolve from /opt/mathaug.
# The worker reaches models over HTTP (the compose file's vLLM server, `backend: openai`), so no vLLM here;
# Dask and Ray runners are included (`pip install .[scale]`).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

WORKDIR /opt/mathaug
COPY pyproject.toml README.md ./
COPY pipeline/ pipeline/
COPY flows/ flows/
RUN pip install -e ".[scale]"

COPY data/ data/
COPY prompts/ prompts/
COPY recipes/ recipes/
COPY prefect.yaml ./

# datasets land here (a named volume in docker-compose.yml); deployments run from /opt/mathaug
VOLUME ["/opt/mathaug/out"]

CMD ["prefect", "worker", "start", "--pool", "mathaug", "--type", "process"]
