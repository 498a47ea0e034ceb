# specrag API image (CPU). Used by docker-compose.yml against PostgreSQL; without
# SPECRAG_DATABASE_URL it falls back to a SQLite file under $SPECRAG_HOME.
#
# The image installs the same wheel CI checks (.ci/check_wheel.sh): built in the first
# stage from the project files, installed with its extras in the second.
FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-deps -w /dist .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    SPECRAG_HOME=/data
WORKDIR /app

# The CPU build of the pinned torch first, so that installing the package never pulls CUDA.
COPY constraints.txt ./
RUN pip install -c constraints.txt --index-url https://download.pytorch.org/whl/cpu torch
COPY --from=wheel /dist /dist
RUN WHEEL=$(ls /dist/specrag-*.whl) && pip install -c constraints.txt "${WHEEL}[postgres]"

RUN useradd --create-home --uid 1000 specrag && mkdir -p /data && chown specrag /data
USER specrag
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"

CMD ["specrag", "serve", "--host", "0.0.0.0", "--port", "8000"]
